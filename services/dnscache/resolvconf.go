package dnscache

import (
	"fmt"
	"os"
	"strings"

	"gatehouse/safeio"
)

// MaxResolvConfServers is how many nameserver lines the C library reads.
const MaxResolvConfServers = 3

// ResolvConf renders resolv.conf for servers and search domains.
func ResolvConf(servers, search []string) string {
	var b strings.Builder
	b.WriteString("# written by gatehouse; edits are overwritten\n")
	for i, s := range servers {
		if i == MaxResolvConfServers {
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	b.WriteString("options timeout:2 attempts:2\n")
	return b.String()
}

// writeIfChanged replaces file atomically, and only if its content differs.
func writeIfChanged(file, content string) (bool, error) {
	if b, err := os.ReadFile(file); err == nil && string(b) == content {
		return false, nil
	}
	if err := safeio.WriteFile(file, []byte(content), 0o644); err != nil {
		return false, fmt.Errorf("dns: %w", err)
	}
	return true, nil
}
