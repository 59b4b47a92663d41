package config

import (
	"strings"
	"testing"
)

func TestTransportSec(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // error substrings; none: valid
	}{
		{"dane everywhere", `smtp:
  outbound_tls: dane
  tls_policy: [{destination: example.net, level: dane}]
  connectors: [{name: out, smarthost: "[smtp.example.com]:25", tls: dane}]
  mta_sts: false
  tls_rpt: {organization: Example Ltd, contact: postmaster@example.com}
`, nil},
		{"contact URIs", "smtp:\n  tls_rpt: {organization: X, contact: \"https://example.com/tlsrpt\"}\n", nil},
		{"mailto contact", "smtp:\n  tls_rpt: {organization: X, contact: \"mailto:tls@example.com\"}\n", nil},
		{"bad report identity", "smtp:\n  tls_rpt: {organization: \"\", contact: nobody}\n",
			[]string{"smtp.tls_rpt.organization", "smtp.tls_rpt.contact"}},
		{"dane with AUTH", `smtp:
  connectors: [{name: out, smarthost: "[smtp.example.com]:587", tls: dane, auth: {user: u, password_file: /data/p}}]
`, []string{"smtp.connectors[0].tls: dane falls back to plain text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse("f.yaml", []byte(tt.yaml))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestMTASTSDefaults(t *testing.T) {
	c, _, err := Parse("f.yaml", []byte("smtp:\n  outbound_tls: dane\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.SMTP
	if s.OutboundTLS != TLSDane || !s.MTASTSEnabled() || s.TLSRPT != nil {
		t.Fatalf("defaults: level %v, mta_sts %v, tls_rpt %v", s.OutboundTLS, s.MTASTSEnabled(), s.TLSRPT)
	}
	for l, want := range map[TLSLevel]bool{TLSNone: false, TLSMay: true, TLSEncrypt: true, TLSVerify: true, TLSSecure: false, TLSDane: true} {
		if got := s.MTASTSApplies(l); got != want {
			t.Errorf("MTA-STS at %v: %v, want %v", l, got, want)
		}
	}
	f := false
	s.MTASTS = &f
	if s.MTASTSApplies(TLSMay) {
		t.Error("mta_sts: false still applies")
	}
}
