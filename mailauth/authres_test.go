package mailauth

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
)

func TestAuthResultsFormat(t *testing.T) {
	tests := []struct {
		name string
		in   AuthResults
		want string
	}{
		{"nothing checked", AuthResults{}, "mx.gatehouse.test; none"},
		{"all three", AuthResults{
			SPF:         &SPFResult{Result: spf.Pass, MailFrom: "bounce@example.com", Helo: "mail.example.com", Identity: "mailfrom"},
			DKIMChecked: true,
			DKIM: []DKIMResult{
				{Domain: "example.com", Selector: "sel", Algorithm: "rsa-sha256", Identifier: "@example.com", Status: DKIMPass},
				{Domain: "esp.test", Selector: "s1", Algorithm: "ed25519-sha256", Identifier: "news@esp.test", Status: DKIMFail, Reason: "signature did not verify"},
			},
			DMARC: &DMARCResult{Status: DMARCPass, FromDomain: "example.com", Policy: "reject", Reason: "aligned DKIM"},
		}, "mx.gatehouse.test; spf=pass smtp.mailfrom=bounce@example.com; " +
			"dkim=pass header.a=rsa-sha256 header.d=example.com header.s=sel; " +
			`dkim=fail reason="signature did not verify" header.a=ed25519-sha256 header.d=esp.test header.i=news@esp.test header.s=s1; ` +
			"dmarc=pass header.from=example.com policy.dmarc=reject"},
		{"null sender, no signature, DMARC fail", AuthResults{
			SPF:         &SPFResult{Result: spf.TempError, Err: errors.New("lookup x: timeout"), Helo: "mail.example.com", Identity: "helo"},
			DKIMChecked: true,
			DMARC:       &DMARCResult{Status: DMARCFail, FromDomain: "example.com", Policy: "quarantine", Reason: "no aligned SPF or DKIM pass"},
		}, `mx.gatehouse.test; spf=temperror reason="lookup x: timeout" smtp.helo=mail.example.com; dkim=none ; ` +
			`dmarc=fail reason="no aligned SPF or DKIM pass" header.from=example.com policy.dmarc=quarantine`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.Format("mx.gatehouse.test")
			if got != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
			// What we write, go-msgauth (and so other verifiers) reads back.
			id, rs, err := authres.Parse(got)
			if err != nil || id != "mx.gatehouse.test" {
				t.Errorf("Parse: %q, %v", id, err)
			}
			n := 0
			if tc.in.SPF != nil {
				n++
			}
			if tc.in.DKIMChecked {
				n += max(1, len(tc.in.DKIM))
			}
			if tc.in.DMARC != nil {
				n++
			}
			if len(rs) != n {
				t.Errorf("parsed %d results, want %d", len(rs), n)
			}
		})
	}
}

func TestOwnAuthResults(t *testing.T) {
	values := []string{
		"mx.gatehouse.test; spf=pass smtp.mailfrom=a@b.test", // forged: ours
		"other.example; dkim=pass header.d=b.test",           // someone else's
		"MX.Gatehouse.Test 1; dmarc=pass",                    // ours, case and version
		"(comment (nested)) mx.gatehouse.test; none",         // ours behind a comment
		`"mx.gatehouse.test"; none`,                          // quoted
		"mx.gatehouse.test.evil; none",                       // not ours
		"mx.gatehouse.test(c); none",                         // ours, comment right after
		"(unterminated mx.gatehouse.test; none",              // unreadable
		"",                                                   // empty
	}
	if got, want := OwnAuthResults(values, "mx.gatehouse.test"), []int{0, 2, 3, 4, 6}; !reflect.DeepEqual(got, want) {
		t.Errorf("OwnAuthResults = %v, want %v", got, want)
	}
}

// TestInboundFlow runs the checks as the SMTP server will: SPF at MAIL
// FROM, DKIM while DATA streams, then DMARC and the header.
func TestInboundFlow(t *testing.T) {
	rk, _ := testKeys()
	ts := newTestDNS(t)
	ts.addTXT("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
	ts.addTXT("sel._domainkey.example.com", dkimRecord(t, rk))
	ts.addTXT("_dmarc.example.com", "v=DMARC1; p=reject")
	res := ts.resolver()
	ctx := context.Background()

	for _, tc := range []struct {
		name, ip, alter string
		want            string
		disposition     string
	}{
		{"aligned", "192.0.2.7", "", "spf=pass smtp.mailfrom=bounce@example.com; dkim=pass header.a=rsa-sha256 header.d=example.com header.s=sel; dmarc=pass header.from=example.com policy.dmarc=reject", "none"},
		{"forged", "198.51.100.1", "attached", "spf=fail smtp.mailfrom=bounce@example.com; dkim=fail reason=\"body hash did not verify\" header.a=rsa-sha256 header.d=example.com header.s=sel; dmarc=fail reason=\"no aligned SPF or DKIM pass\" header.from=example.com policy.dmarc=reject", "reject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := SPF{Resolver: res, Receiver: "mx.gatehouse.test"}.Check(ctx, netip.MustParseAddr(tc.ip), "mail.example.com", "bounce@example.com")
			msg := sign(t, testMessage, "example.com", "sel", rk)
			if tc.alter != "" {
				msg = strings.Replace(msg, tc.alter, "ALTERED", 1)
			}
			v := NewDKIMVerifier(ctx, res, DKIMOptions{})
			v.Write([]byte(msg))
			v.Close()
			dk, err := v.Results()
			if err != nil {
				t.Fatal(err)
			}
			d := DMARC{Resolver: res}.Check(ctx, DMARCInput{From: []string{"Alice <alice@example.com>"}, SPF: s, DKIM: dk})
			got := AuthResults{SPF: &s, DKIMChecked: true, DKIM: dk, DMARC: &d}.Format("mx.gatehouse.test")
			if want := "mx.gatehouse.test; " + tc.want; got != want {
				t.Errorf("\n got %s\nwant %s", got, want)
			}
			if string(d.Disposition) != tc.disposition {
				t.Errorf("disposition %s, want %s", d.Disposition, tc.disposition)
			}
		})
	}
}

// FuzzAuthServID: no panic, and an authserv-id read is never empty and
// never holds a separator.
func FuzzAuthServID(f *testing.F) {
	for _, s := range []string{"mx.example.com; spf=pass", "(c) mx 1; none", `"q\"x"; none`, "((", `"`, "(\\", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := AuthServID(v)
		if ok && id == "" {
			t.Fatalf("%q: empty id", v)
		}
		if ok && !strings.HasPrefix(strings.TrimSpace(v), `"`) && !strings.HasPrefix(strings.TrimSpace(v), "(") && strings.ContainsAny(id, "; \t(") {
			t.Fatalf("%q: id %q", v, id)
		}
	})
}
