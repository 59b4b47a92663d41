package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILNx1j5XjRSQhvizLtd/NlOFArTxkVMdLx2wVLOJLwn admin@example.com"

func TestParseAuthorizedKey(t *testing.T) {
	for _, tc := range []struct {
		options string
		want    string // the parsed options, or the error and its offset in the options
	}{
		{"", "from=[] command=\"\" no-pty=false"},
		{"restrict", "from=[] command=\"\" no-pty=true"},
		{"no-pty", "from=[] command=\"\" no-pty=true"},
		{"restrict,pty", "from=[] command=\"\" no-pty=false"},
		{"pty,restrict", "from=[] command=\"\" no-pty=true"},
		{"RESTRICT,Command=\"status\"", "from=[] command=\"status\" no-pty=true"},
		{`command="logs \"ssh\" 10"`, `from=[] command="logs \"ssh\" 10" no-pty=false`},
		{`from="10.99.0.0/16,!10.99.1.0/24,192.0.2.7,2001:db8::/32,10.98.*,fe80::?"`,
			`from=[10.99.0.0/16 !10.99.1.0/24 192.0.2.7/32 2001:db8::/32 10.98.* fe80::?] command="" no-pty=false`},
		{`from="10.99.0.0/16",command="queue",restrict`, `from=[10.99.0.0/16] command="queue" no-pty=true`},
		{`no-port-forwarding`, `0: option "no-port-forwarding" is not supported: the shell forwards nothing and runs no rc files, so leave it out (the shell honours from=, command=, restrict, no-pty and pty)`},
		{`restrict,environment="A=1"`, `9: option "environment" is not supported (the shell honours from=, command=, restrict, no-pty and pty)`},
		{`restrict,,expiry-time="20300101"`, `10: option "expiry-time" is not supported (the shell honours from=, command=, restrict, no-pty and pty)`},
		{`command="status",command="ip"`, `17: option "command" is given twice`},
		{`command=status`, `8: option "command": the value must be in double quotes`},
		{`command=""`, `8: option "command": an empty command`},
		{`from`, `0: option "from" needs a value: from="..."`},
		{`no-pty="yes"`, `0: option "no-pty" takes no value`},
		{`from="10.0.0.0/8,*.example.com"`, `17: option "from": "*.example.com" is not an address, a CIDR prefix or an address wildcard like 10.99.*; host names are not supported (the shell does not look client names up)`},
		{`from="10.99.1.0/16"`, `6: option "from": "10.99.1.0/16" has host bits set: did you mean 10.99.0.0/16?`},
		{`from="10.0.0.0/8,"`, `17: option "from": "": an empty pattern`},
		{`from="!"`, `6: option "from": "!": an empty pattern`},
	} {
		line := testKey
		if tc.options != "" {
			line = "  " + tc.options + " " + testKey
		}
		k, err := ParseAuthorizedKey(line)
		var got string
		var ke *KeyError
		switch {
		case errors.As(err, &ke):
			got = fmt.Sprintf("%d: %s", ke.Offset-2, ke.Msg) // offset in the options
		case err != nil:
			got = "error " + err.Error()
		default:
			var from []string
			for _, p := range k.From {
				s := p.Glob
				if s == "" {
					s = p.Prefix.String()
				}
				if p.Not {
					s = "!" + s
				}
				from = append(from, s)
			}
			got = fmt.Sprintf("from=[%s] command=%q no-pty=%v", strings.Join(from, " "), k.Command, k.NoPTY)
			if k.Comment != "admin@example.com" {
				t.Errorf("%s: comment %q", tc.options, k.Comment)
			}
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.options, got, tc.want)
		}
	}
	for _, bad := range []string{"", "# a comment", "ssh-ed25519 AAAA", "restrict ssh-rsa " + strings.Fields(testKey)[1], testKey + "\n" + testKey} {
		if _, err := ParseAuthorizedKey(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestFromAllows(t *testing.T) {
	for _, tc := range []struct {
		from string
		addr string
		want bool
	}{
		{`from="10.99.0.0/16"`, "10.99.3.4", true},
		{`from="10.99.0.0/16"`, "10.78.0.1", false},
		{`from="10.99.0.0/16"`, "::ffff:10.99.3.4", true},
		{`from="10.99.0.0/16,!10.99.1.0/24"`, "10.99.1.5", false},
		{`from="!10.99.1.0/24,10.99.0.0/16"`, "10.99.2.5", true},
		{`from="!10.99.1.0/24"`, "10.99.2.5", false}, // only a negation: nothing matches
		{`from="192.0.2.7"`, "192.0.2.7", true},
		{`from="192.0.2.7"`, "192.0.2.70", false},
		{`from="10.98.*"`, "10.98.1.2", true},
		{`from="10.98.*"`, "10.9.1.2", false},
		{`from="10.98.0.?"`, "10.98.0.12", false},
		{`from="2001:db8::/32"`, "2001:db8:1::1", true},
		{`from="2001:db8::/32"`, "10.99.0.1", false},
		{`from="2001:DB8::*"`, "2001:db8::5", true},
		{``, "203.0.113.1", true},
	} {
		k, err := ParseAuthorizedKey(strings.TrimSpace(tc.from + " " + testKey))
		if err != nil {
			t.Fatalf("%s: %v", tc.from, err)
		}
		if got := k.FromAllows(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("%s from %s: %v, want %v", tc.from, tc.addr, got, tc.want)
		}
	}
}

func FuzzParseAuthorizedKey(f *testing.F) {
	for _, s := range []string{testKey, `from="10.0.0.0/8,!10.1.*" ` + testKey, `command="a \"b\"",restrict ` + testKey, `x="` + testKey} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		k, err := ParseAuthorizedKey(line)
		var ke *KeyError
		if errors.As(err, &ke) && (ke.Offset < 0 || ke.Offset > len(line)) {
			t.Fatalf("offset %d outside the line (%d bytes)", ke.Offset, len(line))
		}
		if err == nil && k.Key == nil {
			t.Fatal("no key and no error")
		}
	})
}
