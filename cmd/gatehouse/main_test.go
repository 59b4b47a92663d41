package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func call(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestConfigValidateExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("hostname: gw1\n"), 0o644)
	os.WriteFile(bad, []byte("hostname: gw1\ninterfaces:\n  - name: eth0\n    mtu: 10\n"), 0o644)

	if code, out, _ := call("config", "validate", good); code != 0 || !strings.Contains(out, "valid") {
		t.Errorf("good config: exit %d, %q", code, out)
	}
	code, _, errOut := call("config", "validate", bad)
	if code != 2 || !strings.Contains(errOut, bad+":4:10: interfaces[0].mtu: 10 is out of range (68 to 65535)") {
		t.Errorf("bad config: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := call("config", "validate", filepath.Join(dir, "missing.yaml")); code != 2 {
		t.Errorf("missing file: exit %d, want 2", code)
	}
}

// The default config printed by the CLI is itself a valid config file.
func TestConfigDefaultRoundTrips(t *testing.T) {
	code, out, _ := call("config", "default")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	f := filepath.Join(t.TempDir(), "default.yaml")
	os.WriteFile(f, []byte(out), 0o644)
	if code, _, errOut := call("config", "validate", f); code != 0 {
		t.Errorf("default does not validate: %s", errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"config"}, {"run"}, {"status", "--format", "xml"}, {"logs"}} {
		if code, _, _ := call(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestStatusWithoutInstance(t *testing.T) {
	code, _, errOut := call("status", "--state", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "no gatehouse is running") {
		t.Errorf("exit %d, %q", code, errOut)
	}
}

func TestPathsFormats(t *testing.T) {
	code, out, errOut := call("paths", "--config", "../../config/example.yaml", "--format", "csv")
	if code != 0 || !strings.HasPrefix(out, "Function,Port,Source,Target,Description,Required\n") ||
		!strings.Contains(out, `Administration access,TCP 8443,"192.168.0.1-50, admin.example.com",Appliance,`) {
		t.Errorf("exit %d, %s\n%s", code, errOut, out)
	}
	if code, _, _ := call("paths", "--config", "../../config/example.yaml", "--format", "xml"); code != 2 {
		t.Errorf("unknown format: exit %d", code)
	}
}

// `dkim keygen` writes the key where --dir or --state says, prints a
// record a DNS server can load (a zone file snippet), and never replaces
// a key.
func TestDKIMKeygen(t *testing.T) {
	state := t.TempDir()
	for _, tc := range []struct {
		args []string
		key  string
		k    string
	}{
		{[]string{"dkim", "keygen", "example.com", "s1", "--state", state}, filepath.Join(state, "dkim", "example.com.s1.key"), "rsa"},
		{[]string{"dkim", "keygen", "--type", "ed25519", "Example.com", "s2", "--dir", filepath.Join(state, "elsewhere")}, filepath.Join(state, "elsewhere", "example.com.s2.key"), "ed25519"},
	} {
		code, out, errOut := call(tc.args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", tc.args, code, errOut)
		}
		if st, err := os.Stat(tc.key); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v", tc.key, err)
		}
		zp := dns.NewZoneParser(strings.NewReader(out), "", "")
		rr, ok := zp.Next()
		if !ok || zp.Err() != nil {
			t.Fatalf("%q printed no record (%v):\n%s", tc.args, zp.Err(), out)
		}
		txt, _ := rr.(*dns.TXT)
		if txt == nil || txt.Hdr.Name != tc.args[len(tc.args)-3]+"._domainkey.example.com." ||
			!strings.HasPrefix(strings.Join(txt.Txt, ""), "v=DKIM1; k="+tc.k+"; p=") || !strings.Contains(out, tc.key) {
			t.Errorf("%q: %v\n%s", tc.args, rr, out)
		}
		if code, _, errOut := call(tc.args...); code != 1 || !strings.Contains(errOut, "never replaced") {
			t.Errorf("again: exit %d, %s", code, errOut)
		}
	}
}
