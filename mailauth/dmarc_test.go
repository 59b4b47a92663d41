package mailauth

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
)

// fixedRand draws the same number every time, to pin pct= sampling.
type fixedRand int

func (f fixedRand) IntN(int) int { return int(f) }

func TestDMARC(t *testing.T) {
	ts := newTestDNS(t)
	for name, rec := range map[string]string{
		"_dmarc.reject.test":       "v=DMARC1; p=reject; rua=mailto:agg@reject.test",
		"_dmarc.quar.test":         "v=DMARC1; p=quarantine; adkim=s; aspf=s",
		"_dmarc.none.test":         "v=DMARC1; p=none",
		"_dmarc.org.test":          "v=DMARC1; p=reject; sp=quarantine",
		"_dmarc.orgnosp.test":      "v=DMARC1;p=reject",
		"_dmarc.pct.test":          "v=DMARC1; p=reject; pct=50",
		"_dmarc.bad.test":          "v=DMARC1; p=bogus",
		"_dmarc.example.co.uk":     "v=DMARC1; p=quarantine",
		"_dmarc.spf1.test":         "v=spf1 -all",
		"_dmarc.sub.override.test": "v=DMARC1; p=none",
		"_dmarc.override.test":     "v=DMARC1; p=reject; sp=reject",
	} {
		ts.addTXT(name, rec)
	}
	ts.addTXT("_dmarc.two.test", "v=DMARC1; p=reject")
	ts.addTXT("_dmarc.two.test", "v=DMARC1; p=none")
	ts.set(func() { ts.servfail["_dmarc.temp.test."] = true })

	spfPass := func(d string) SPFResult { return SPFResult{Result: spf.Pass, Domain: d} }
	spfFail := func(d string) SPFResult { return SPFResult{Result: spf.Fail, Domain: d} }
	dkimOK := func(d string) []DKIMResult { return []DKIMResult{{Domain: d, Status: DKIMPass}} }
	dkimBad := func(d string) []DKIMResult { return []DKIMResult{{Domain: d, Status: DKIMFail, Reason: "body hash"}} }

	tests := []struct {
		name        string
		from        []string
		spf         SPFResult
		dkim        []DKIMResult
		rand        fixedRand
		status      DMARCStatus
		disposition dmarc.Policy
		policy      dmarc.Policy
		recordAt    string
	}{
		{"SPF aligned", []string{"a@reject.test"}, spfPass("reject.test"), nil, 0, DMARCPass, "none", "reject", "reject.test"},
		{"SPF aligned, relaxed", []string{"A <a@reject.test>"}, spfPass("bounce.reject.test"), nil, 0, DMARCPass, "none", "reject", "reject.test"},
		{"SPF pass, unaligned", []string{"a@reject.test"}, spfPass("esp.test"), nil, 0, DMARCFail, "reject", "reject", "reject.test"},
		{"SPF aligned but fail", []string{"a@reject.test"}, spfFail("reject.test"), nil, 0, DMARCFail, "reject", "reject", "reject.test"},
		{"DKIM aligned", []string{"a@reject.test"}, spfFail("esp.test"), dkimOK("reject.test"), 0, DMARCPass, "none", "reject", "reject.test"},
		{"DKIM aligned, relaxed", []string{"a@reject.test"}, SPFResult{}, dkimOK("mail.reject.test"), 0, DMARCPass, "none", "reject", "reject.test"},
		{"DKIM unaligned", []string{"a@reject.test"}, SPFResult{}, dkimOK("esp.test"), 0, DMARCFail, "reject", "reject", "reject.test"},
		{"DKIM aligned but fail", []string{"a@reject.test"}, SPFResult{}, dkimBad("reject.test"), 0, DMARCFail, "reject", "reject", "reject.test"},
		{"strict SPF, subdomain", []string{"a@quar.test"}, spfPass("bounce.quar.test"), nil, 0, DMARCFail, "quarantine", "quarantine", "quar.test"},
		{"strict DKIM, subdomain", []string{"a@quar.test"}, SPFResult{}, dkimOK("mail.quar.test"), 0, DMARCFail, "quarantine", "quarantine", "quar.test"},
		{"strict DKIM, exact", []string{"a@Quar.Test"}, SPFResult{}, dkimOK("quar.test"), 0, DMARCPass, "none", "quarantine", "quar.test"},
		{"p=none", []string{"a@none.test"}, spfPass("esp.test"), nil, 0, DMARCFail, "none", "none", "none.test"},
		{"sp= for a subdomain", []string{"a@sub.org.test"}, spfPass("esp.test"), nil, 0, DMARCFail, "quarantine", "quarantine", "org.test"},
		{"p= for the org domain itself", []string{"a@org.test"}, spfPass("esp.test"), nil, 0, DMARCFail, "reject", "reject", "org.test"},
		{"p= for a subdomain without sp=", []string{"a@deep.sub.orgnosp.test"}, spfPass("esp.test"), nil, 0, DMARCFail, "reject", "reject", "orgnosp.test"},
		{"subdomain's own record wins", []string{"a@sub.override.test"}, spfPass("esp.test"), nil, 0, DMARCFail, "none", "none", "sub.override.test"},
		{"relaxed alignment across subdomains", []string{"a@sub.org.test"}, spfPass("other.org.test"), nil, 0, DMARCPass, "none", "quarantine", "org.test"},
		{"org domain under a two-label suffix", []string{"a@x.y.example.co.uk"}, spfPass("esp.test"), nil, 0, DMARCFail, "quarantine", "quarantine", "example.co.uk"},
		{"no record", []string{"a@nodmarc.test"}, spfPass("esp.test"), nil, 0, DMARCNone, "none", "", ""},
		{"not a DMARC record", []string{"a@spf1.test"}, spfPass("esp.test"), nil, 0, DMARCNone, "none", "", ""},
		{"two records", []string{"a@two.test"}, spfPass("esp.test"), nil, 0, DMARCNone, "none", "", ""},
		{"broken record", []string{"a@bad.test"}, spfPass("esp.test"), nil, 0, DMARCPermError, "none", "", ""},
		{"lookup fails", []string{"a@temp.test"}, spfPass("esp.test"), nil, 0, DMARCTempError, "none", "", ""},
		{"pct selects", []string{"a@pct.test"}, spfPass("esp.test"), nil, 49, DMARCFail, "reject", "reject", "pct.test"},
		{"pct leaves out: one step down", []string{"a@pct.test"}, spfPass("esp.test"), nil, 50, DMARCFail, "quarantine", "reject", "pct.test"},
		{"no From", nil, spfPass("esp.test"), nil, 0, DMARCPermError, "none", "", ""},
		{"From without domain", []string{"undisclosed-recipients:;"}, spfPass("esp.test"), nil, 0, DMARCPermError, "none", "", ""},
		{"From unparsable", []string{"<<<"}, spfPass("esp.test"), nil, 0, DMARCPermError, "none", "", ""},
		{"two addresses, one domain", []string{"a@reject.test, b@reject.test"}, spfPass("reject.test"), nil, 0, DMARCPass, "none", "reject", "reject.test"},
		{"two From fields, one domain", []string{"a@reject.test", "b@Reject.Test"}, spfPass("reject.test"), nil, 0, DMARCPass, "none", "reject", "reject.test"},
		{"two domains: strictest failing policy", []string{"a@none.test, b@reject.test"}, spfPass("none.test"), nil, 0, DMARCPermError, "reject", "reject", "reject.test"},
		{"two domains, both pass", []string{"a@none.test", "b@reject.test"}, spfPass("none.test"), dkimOK("reject.test"), 0, DMARCPermError, "none", "none", "none.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DMARC{Resolver: ts.resolver(), Timeout: 2 * time.Second, Rand: tc.rand}
			r := d.Check(context.Background(), DMARCInput{From: tc.from, SPF: tc.spf, DKIM: tc.dkim})
			if r.Status != tc.status || r.Disposition != tc.disposition || r.Policy != tc.policy || r.RecordDomain != tc.recordAt {
				t.Errorf("got %s disposition %s policy %q record at %q (%s); want %s %s %q %q",
					r.Status, r.Disposition, r.Policy, r.RecordDomain, r.Reason, tc.status, tc.disposition, tc.policy, tc.recordAt)
			}
			if r.Reason == "" {
				t.Error("no reason")
			}
		})
	}
}

func TestSamplePercent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 0
	for range 10000 {
		if SamplePercent(30, r) {
			n++
		}
	}
	if n < 2700 || n > 3300 {
		t.Errorf("pct=30 sampled %d of 10000", n)
	}
	if SamplePercent(0, fixedRand(0)) || !SamplePercent(100, fixedRand(99)) || !SamplePercent(1, fixedRand(0)) || SamplePercent(1, fixedRand(1)) {
		t.Error("bounds")
	}
}

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com": "example.com", "a.b.example.com.": "example.com", "x.example.co.uk": "example.co.uk",
		"co.uk": "co.uk", "com": "com", "localhost": "localhost", "A.Example.COM": "example.com",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzFromDomains: no panic; every domain returned is lower case, without
// a trailing dot, and not empty.
func FuzzFromDomains(f *testing.F) {
	for _, s := range []string{"a@b.test", "A <a@B.Test.>", "a@x.test, b@y.test", "undisclosed-recipients:;", "=?utf-8?q?x?= <a@b>", "\"a@b\"@c.test", "<<<"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ds, err := FromDomains([]string{v})
		if err != nil {
			return
		}
		if len(ds) == 0 {
			t.Fatal("no domains and no error")
		}
		for _, d := range ds {
			if d == "" || d != normDomain(d) {
				t.Fatalf("%q: domain %q", v, d)
			}
		}
	})
}
