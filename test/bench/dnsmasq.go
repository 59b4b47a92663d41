package bench

import "strings"

// DnsmasqTXT is a dnsmasq config line for a TXT record, its value split
// into strings of at most 255 octets (RFC 1035 section 3.3): DKIM keys
// and long SPF records, for the mail-authentication benchmark and the
// e2e tests alike.
func DnsmasqTXT(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return "txt-record=" + name + "," + strings.Join(parts, ",") + "\n"
}
