package mailauth

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
)

func spfServer(t *testing.T) *testDNS {
	ts := newTestDNS(t,
		"mail.mx.test. 300 IN A 192.0.2.1",
		"mx.test. 300 IN MX 10 mail.mx.test.",
		"host.a.test. 300 IN A 192.0.2.1",
	)
	for name, rec := range map[string]string{
		"pass.test":    "v=spf1 ip4:192.0.2.0/24 -all",
		"fail.test":    "v=spf1 ip4:198.51.100.0/24 -all",
		"soft.test":    "v=spf1 ip4:198.51.100.0/24 ~all",
		"neutral.test": "v=spf1 ip4:198.51.100.0/24 ?all",
		"perm.test":    "v=spf1 foo:bar -all",
		"mx.test":      "v=spf1 mx -all",
		"a.test":       "v=spf1 a:host.a.test -all",
		"inc.test":     "v=spf1 include:pass.test -all",
		"six.test":     "v=spf1 ip6:2001:db8::/32 -all",
		"void.test":    "v=spf1 a:v1.test a:v2.test a:v3.test -all",
		"helo.test":    "v=spf1 ip4:192.0.2.1 -all",
		"tempinc.test": "v=spf1 include:temp.test -all",
		"none.test":    "google-site-verification=abc",
		"long.test":    "v=spf1 " + strings.Repeat("ip4:203.0.113.9 ", 30) + "ip4:192.0.2.1 -all",
	} {
		ts.addTXT(name, rec)
	}
	ts.addTXT("two.test", "v=spf1 -all")
	ts.addTXT("two.test", "v=spf1 +all")
	// 11 includes deep: past the 10-lookup limit.
	for i := range 12 {
		ts.addTXT(fmt.Sprintf("l%d.test", i), fmt.Sprintf("v=spf1 include:l%d.test -all", i+1))
	}
	ts.set(func() {
		ts.servfail["temp.test."] = true
		ts.silent["slow.test."] = true
	})
	return ts
}

func TestSPF(t *testing.T) {
	ts := spfServer(t)
	s := SPF{Resolver: ts.resolver(), Receiver: "mx.gatehouse.test", Timeout: 2 * time.Second}
	tests := []struct {
		ip, helo, from string
		want           spf.Result
		identity       string
	}{
		{"192.0.2.1", "h.test", "a@pass.test", spf.Pass, "mailfrom"},
		{"192.0.2.1", "h.test", "a@fail.test", spf.Fail, "mailfrom"},
		{"192.0.2.1", "h.test", "a@soft.test", spf.SoftFail, "mailfrom"},
		{"192.0.2.1", "h.test", "a@neutral.test", spf.Neutral, "mailfrom"},
		{"192.0.2.1", "h.test", "a@nxdomain.test", spf.None, "mailfrom"},
		{"192.0.2.1", "h.test", "a@none.test", spf.None, "mailfrom"},
		{"192.0.2.1", "h.test", "a@temp.test", spf.TempError, "mailfrom"},
		{"192.0.2.1", "h.test", "a@tempinc.test", spf.TempError, "mailfrom"},
		{"192.0.2.1", "h.test", "a@slow.test", spf.TempError, "mailfrom"},
		{"192.0.2.1", "h.test", "a@perm.test", spf.PermError, "mailfrom"},
		{"192.0.2.1", "h.test", "a@two.test", spf.PermError, "mailfrom"},
		{"192.0.2.1", "h.test", "a@mx.test", spf.Pass, "mailfrom"},
		{"192.0.2.2", "h.test", "a@mx.test", spf.Fail, "mailfrom"},
		{"192.0.2.1", "h.test", "a@a.test", spf.Pass, "mailfrom"},
		{"192.0.2.1", "h.test", "a@inc.test", spf.Pass, "mailfrom"},
		{"192.0.2.1", "h.test", "a@long.test", spf.Pass, "mailfrom"},
		{"2001:db8::25", "h.test", "a@six.test", spf.Pass, "mailfrom"},
		{"::ffff:192.0.2.1", "h.test", "a@six.test", spf.Fail, "mailfrom"},
		{"192.0.2.1", "h.test", "a@l0.test", spf.PermError, "mailfrom"},   // lookup limit
		{"192.0.2.1", "h.test", "a@void.test", spf.PermError, "mailfrom"}, // void lookup limit
		{"192.0.2.1", "helo.test", "", spf.Pass, "helo"},                  // null sender: postmaster@HELO
		{"192.0.2.9", "helo.test", "", spf.Fail, "helo"},
		{"192.0.2.1", "", "", spf.None, "helo"},
	}
	for _, tc := range tests {
		t.Run(tc.from+"@"+tc.ip, func(t *testing.T) {
			start := time.Now()
			r := s.Check(context.Background(), netip.MustParseAddr(tc.ip), tc.helo, tc.from)
			if r.Result != tc.want || r.Identity != tc.identity {
				t.Errorf("got %s (%v) identity %s, want %s %s", r.Result, r.Err, r.Identity, tc.want, tc.identity)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v, past the deadline", d)
			}
			h := r.ReceivedSPF()
			if !strings.HasPrefix(h, string(tc.want)+" (") || !strings.Contains(h, "receiver=mx.gatehouse.test;") {
				t.Errorf("Received-SPF: %s", h)
			}
		})
	}
}

func TestReceivedSPF(t *testing.T) {
	tests := []struct {
		r    SPFResult
		want string
	}{
		{SPFResult{Result: spf.Pass, ClientIP: netip.MustParseAddr("192.0.2.1"), Helo: "mail.example.com",
			MailFrom: "joe@example.com", Identity: "mailfrom", Domain: "example.com", Receiver: "mx.example.net"},
			`pass (mx.example.net: domain of joe@example.com designates 192.0.2.1 as permitted sender) client-ip=192.0.2.1; envelope-from="joe@example.com"; helo=mail.example.com; receiver=mx.example.net; identity=mailfrom`},
		{SPFResult{Result: spf.TempError, Err: fmt.Errorf("lookup x: timeout"), ClientIP: netip.MustParseAddr("2001:db8::1"),
			Helo: "evil (x)", MailFrom: `"a b"@example.com`, Identity: "mailfrom", Domain: "example.com", Receiver: "mx.example.net"},
			`temperror (mx.example.net: temporary error checking example.com) client-ip="2001:db8::1"; envelope-from="\"a b\"@example.com"; helo="evil (x)"; problem="lookup x: timeout"; receiver=mx.example.net; identity=mailfrom`},
		{SPFResult{Result: spf.None, ClientIP: netip.MustParseAddr("192.0.2.1"), Helo: "h(", Identity: "helo", Domain: "h(", Receiver: "r"},
			`none (r: domain of h_ does not publish SPF) client-ip=192.0.2.1; envelope-from=""; helo="h("; receiver=r; identity=helo`},
	}
	for _, tc := range tests {
		if got := tc.r.ReceivedSPF(); got != tc.want {
			t.Errorf("ReceivedSPF:\n got %s\nwant %s", got, tc.want)
		}
	}
}
