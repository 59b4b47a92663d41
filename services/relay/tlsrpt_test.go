package relay

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"gatehouse/tlsrpt"
)

// The report as mail is what RFC 8460 5.3 asks: multipart/report of type
// tlsrpt, the report-domain and submitter fields, the subject, and the
// gzipped JSON attached as application/tlsrpt+gzip under 5.1's file name.
func TestReportMessage(t *testing.T) {
	rec, err := tlsrpt.Open(t.TempDir(), tlsrpt.Options{Submitter: "mx.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	pol := tlsrpt.Policy{Type: tlsrpt.STS, Domain: "example.net", String: []string{"version: STSv1", "mode: enforce"}, MXHost: []string{"mx.example.net"}}
	rec.Success(pol)
	rec.Failure(pol, tlsrpt.Failure{Result: tlsrpt.CertificateHostMismatch, ReceivingMXHostname: "mx.example.net", ReceivingIP: "192.0.2.7"})
	day := time.Now().UTC().Format("2006-01-02")
	rep, err := rec.Report(day, "example.net")
	if err != nil || rep == nil {
		t.Fatalf("report: %v %v", rep, err)
	}
	rep.OrganizationName, rep.ContactInfo = "Example Ltd", "postmaster@example.test"
	gz, err := rep.Gzip()
	if err != nil {
		t.Fatal(err)
	}
	raw := reportMessage(rep, "mx.example.test", "postmaster@mx.example.test", "tlsrpt@example.net", "x@mx.example.test", time.Now(), gz)
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("a bare LF in the message")
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"From": "<postmaster@mx.example.test>", "To": "<tlsrpt@example.net>",
		"TLS-Report-Domain": "example.net", "TLS-Report-Submitter": "mx.example.test", "Subject": rep.Subject()} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	text, err := mr.NextPart()
	if err != nil || !strings.HasPrefix(text.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("first part %v: %v", text.Header, err)
	}
	att, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if ct := att.Header.Get("Content-Type"); ct != "application/tlsrpt+gzip" {
		t.Errorf("attachment type %q", ct)
	}
	if fn := att.FileName(); fn != rep.Filename() || !strings.HasPrefix(fn, "mx.example.test!example.net!") || !strings.HasSuffix(fn, ".json.gz") {
		t.Errorf("file name %q, want %q", fn, rep.Filename())
	}
	// multipart undoes no transfer encoding other than quoted-printable.
	b64, _ := io.ReadAll(att)
	z, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b64)))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Org      string `json:"organization-name"`
		ID       string `json:"report-id"`
		Policies []struct {
			Summary struct {
				OK     int `json:"total-successful-session-count"`
				Failed int `json:"total-failure-session-count"`
			} `json:"summary"`
		} `json:"policies"`
	}
	if err := json.NewDecoder(zr).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Org != "Example Ltd" || got.ID != rep.ReportID || len(got.Policies) != 1 || got.Policies[0].Summary.OK != 1 || got.Policies[0].Summary.Failed != 1 {
		t.Errorf("report %+v", got)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("more parts than two: %v", err)
	}
}
