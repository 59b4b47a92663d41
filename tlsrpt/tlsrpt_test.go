package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		in     string
		rua    []string // nil: an error
		mailto []string
		https  []string
	}{
		{in: "v=TLSRPTv1; rua=mailto:reports@example.com",
			rua: []string{"mailto:reports@example.com"}, mailto: []string{"reports@example.com"}},
		{in: "v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt",
			rua: []string{"https://reporting.example.com/v1/tlsrpt"}, https: []string{"https://reporting.example.com/v1/tlsrpt"}},
		{in: "v=TLSRPTv1 ; rua=mailto:a@example.com , https://r.example.com/x ; ext=1;",
			rua: []string{"mailto:a@example.com", "https://r.example.com/x"}, mailto: []string{"a@example.com"}, https: []string{"https://r.example.com/x"}},
		{in: "v=TLSRPTv1; rua=mailto:a@example.com?subject=x,ftp://example.com/",
			rua: []string{"mailto:a@example.com?subject=x"}, mailto: []string{"a@example.com"}},
		{in: "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com",
			rua: []string{"mailto:a@example.com"}, mailto: []string{"a@example.com"}},
		{in: "v=TLSRPTv1; rua=mailto:a%2Cb@example.com"}, // not one address

		{in: "v=TLSRPTv1"},
		{in: "v=TLSRPTv1;"},
		{in: "v=TLSRPTv1; rua="},
		{in: "v=TLSRPTv1; rua=ftp://example.com/"},
		{in: "v=TLSRPTv1; rua=http://example.com/"},
		{in: "v=TLSRPTv1; rua=mailto:a@example.com;;"},
		{in: "v=TLSRPTv1; rua=mailto:a@example.com, "},
		{in: "v=TLSRPTv1; rua=not a uri"},
		{in: "v=TLSRPTv2; rua=mailto:a@example.com"},
		{in: "rua=mailto:a@example.com; v=TLSRPTv1"},
		{in: "v=tlsrptv1; rua=mailto:a@example.com"},
		{in: "v=TLSRPTv1; rua=https://user:pw@example.com/"},
		{in: "v=TLSRPTv1; rua=mailto:a@example.com; x=a=b"},
	} {
		rec, err := ParseRecord(tc.in)
		if tc.rua == nil {
			if err == nil {
				t.Errorf("%q: got %v, want an error", tc.in, rec)
			}
			continue
		}
		if err != nil || !slices.Equal(rec.RUA, tc.rua) || !slices.Equal(rec.Mailto(), tc.mailto) || !slices.Equal(rec.HTTPS(), tc.https) {
			t.Errorf("%q: got %v (mailto %v, https %v), %v; want %v %v %v", tc.in, rec.RUA, rec.Mailto(), rec.HTTPS(), err, tc.rua, tc.mailto, tc.https)
		}
	}
}

type txtMap map[string][]string

func (m txtMap) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[name]; ok {
		return v, nil
	}
	return nil, errors.New("NXDOMAIN")
}

func TestLookupRecord(t *testing.T) {
	r := txtMap{
		"_smtp._tls.example.com":  {"v=spf1 -all", "v=TLSRPTv1; rua=mailto:tls@example.com"},
		"_smtp._tls.two.example":  {"v=TLSRPTv1; rua=mailto:a@two.example", "v=TLSRPTv1; rua=mailto:b@two.example"},
		"_smtp._tls.none.example": {"v=spf1 -all"},
	}
	rec, err := LookupRecord(context.Background(), r, "example.com.")
	if err != nil || !slices.Equal(rec.Mailto(), []string{"tls@example.com"}) {
		t.Errorf("example.com: %v, %v", rec, err)
	}
	for _, d := range []string{"two.example", "none.example"} {
		if _, err := LookupRecord(context.Background(), r, d); !errors.Is(err, ErrNoRecord) {
			t.Errorf("%s: %v, want ErrNoRecord", d, err)
		}
	}
	if _, err := LookupRecord(context.Background(), r, "missing.example"); err == nil {
		t.Error("a failed lookup is no error")
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=TLSRPTv1; rua=mailto:reports@example.com",
		"v=TLSRPTv1;rua=mailto:a@example.com,https://r.example.com/v1;x=y;",
		"v=TLSRPTv1; rua=mailto:a%40b@example.com?subject=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseRecord(s)
		if err != nil {
			return
		}
		if len(rec.RUA) == 0 {
			t.Fatal("accepted without a rua")
		}
		for _, u := range rec.RUA {
			if strings.ContainsAny(u, ",; \t") {
				t.Fatalf("URI %q holds a separator", u)
			}
		}
		for _, a := range rec.Mailto() {
			if !strings.Contains(a, "@") || strings.ContainsAny(a, "\r\n<>,") {
				t.Fatalf("address %q", a)
			}
		}
	})
}

func open(t *testing.T, dir string, now *time.Time) *Recorder {
	t.Helper()
	r, err := Open(dir, Options{Organization: "Company-X", Contact: "sts-reporting@company-x.example", Submitter: "mx.company-x.example"})
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return *now }
	return r
}

var stsPolicy = Policy{Type: STS, Domain: "Company-Y.example.",
	String: []string{"version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"},
	MXHost: []string{"*.mail.company-y.example"}}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2016, 4, 1, 10, 0, 0, 0, time.UTC)
	r := open(t, dir, &now)
	for range 5 {
		r.Success(stsPolicy)
	}
	expired := Failure{Result: CertificateExpired, SendingMTAIP: "2001:db8:abcd:0012::1", ReceivingMXHostname: "mx1.mail.company-y.example"}
	for range 3 {
		r.Failure(stsPolicy, expired)
	}
	r.Failure(stsPolicy, Failure{Result: StartTLSNotSupported, SendingMTAIP: "2001:db8:abcd:0013::1",
		ReceivingMXHostname: "mx2.mail.company-y.example", ReceivingIP: "203.0.113.56"})
	r.Success(Policy{Type: NoPolicyFound, Domain: "other.example"})
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}

	// A new Recorder on the same directory (a restart) goes on counting.
	r = open(t, dir, &now)
	r.Success(stsPolicy)
	// Another day.
	next := now.Add(24 * time.Hour)
	r.now = func() time.Time { return next }
	r.Success(stsPolicy)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if days, err := r.Days(); err != nil || !slices.Equal(days, []string{"2016-04-01", "2016-04-02"}) {
		t.Errorf("Days: %v, %v", days, err)
	}
	if ds, err := r.Domains("2016-04-01"); err != nil || !slices.Equal(ds, []string{"company-y.example", "other.example"}) {
		t.Errorf("Domains: %v, %v", ds, err)
	}

	rep, err := r.Report("2016-04-01", "company-y.example")
	if err != nil || rep == nil {
		t.Fatal(rep, err)
	}
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	// The shape of RFC 8460 4.4's example.
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := `{
	  "organization-name": "Company-X",
	  "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
	  "contact-info": "sts-reporting@company-x.example",
	  "report-id": "20160401.company-y.example@mx.company-x.example",
	  "policies": [{
	    "policy": {
	      "policy-type": "sts",
	      "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
	      "policy-domain": "company-y.example",
	      "mx-host": ["*.mail.company-y.example"]
	    },
	    "summary": {"total-successful-session-count": 6, "total-failure-session-count": 4},
	    "failure-details": [
	      {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:0012::1",
	       "receiving-mx-hostname": "mx1.mail.company-y.example", "failed-session-count": 3},
	      {"result-type": "starttls-not-supported", "sending-mta-ip": "2001:db8:abcd:0013::1",
	       "receiving-mx-hostname": "mx2.mail.company-y.example", "receiving-ip": "203.0.113.56", "failed-session-count": 1}
	    ]
	  }]
	}`
	var wantV map[string]any
	if err := json.Unmarshal([]byte(want), &wantV); err != nil {
		t.Fatal(err)
	}
	if g, w := fmt.Sprint(got), fmt.Sprint(wantV); g != w {
		t.Errorf("report:\n%s\nwant the shape of\n%s", b, want)
	}

	if rep.Filename() != "mx.company-x.example!company-y.example!1459468800!1459555199.json.gz" {
		t.Errorf("Filename: %s", rep.Filename())
	}
	if rep.Subject() != "Report Domain: company-y.example Submitter: mx.company-x.example Report-ID: <20160401.company-y.example@mx.company-x.example>" {
		t.Errorf("Subject: %s", rep.Subject())
	}
	gz, err := rep.Gzip()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if unz, _ := io.ReadAll(zr); !bytes.Equal(unz, b) {
		t.Error("Gzip is not the JSON")
	}

	if rep, err := r.Report("2016-04-01", "nobody.example"); rep != nil || err != nil {
		t.Errorf("no sessions: %v, %v", rep, err)
	}
	if err := r.Remove("2016-04-01"); err != nil {
		t.Fatal(err)
	}
	if days, _ := r.Days(); !slices.Equal(days, []string{"2016-04-02"}) {
		t.Errorf("after Remove: %v", days)
	}
	if _, err := r.Report("../x", "a"); err == nil {
		t.Error("a path accepted as a day")
	}
}

func TestBounds(t *testing.T) {
	now := time.Now()
	r := open(t, t.TempDir(), &now)
	for i := range maxDetailsPerPolicy + 10 {
		r.Failure(stsPolicy, Failure{Result: ValidationFailure, ReceivingIP: fmt.Sprint(i)})
	}
	r.Failure(Policy{Type: TLSA, Domain: "x.example", String: []string{strings.Repeat("a", 5000)}}, Failure{Result: TLSAInvalid})
	rep, _ := r.Report(now.UTC().Format(dayLayout), "company-y.example")
	if n := len(rep.Policies[0].FailureDetails); n != maxDetailsPerPolicy || rep.Policies[0].Summary.Failed != maxDetailsPerPolicy+10 {
		t.Errorf("%d details, %d failures", n, rep.Policies[0].Summary.Failed)
	}
	rep, _ = r.Report(now.UTC().Format(dayLayout), "x.example")
	if len(rep.Policies[0].Policy.String[0]) != maxFieldLength {
		t.Error("a long policy string kept whole")
	}
}

func TestResultOf(t *testing.T) {
	if ResultOf(nil) != "" || ResultOf(errors.New("x")) != ValidationFailure {
		t.Error("ResultOf of plain errors")
	}
	err := fmt.Errorf("wrapped: %w", &Error{Result: DANERequired, Err: errors.New("x")})
	if ResultOf(err) != DANERequired {
		t.Errorf("ResultOf(%v) = %s", err, ResultOf(err))
	}
}
