package dkimsign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
)

const message = "From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: quarterly figures\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 +0100\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Bob,\r\n\r\nthe figures are attached.  \r\n\r\n\r\n"

// newKey makes a key with Keygen and loads it as the relay would, with
// the record Keygen printed.
func newKey(t testing.TB, domain, selector, algo string) (*Signer, string) {
	t.Helper()
	path, record, err := Keygen(domain, selector, algo, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(domain, selector, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, record
}

// zone answers TXT queries from records in zone file syntax, as DNS
// would: parsed by miekg/dns (an independent parser of what Keygen
// prints), strings joined as verifiers join them.
type zone map[string][]string

func newZone(t testing.TB, records ...string) zone {
	t.Helper()
	z := zone{}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		txt, ok := rr.(*dns.TXT)
		if !ok {
			t.Fatalf("record %q is a %T", r, rr)
		}
		for _, s := range txt.Txt {
			if len(s) > 255 {
				t.Fatalf("a TXT string of %d bytes", len(s))
			}
		}
		name := strings.TrimSuffix(txt.Hdr.Name, ".")
		z[name] = append(z[name], strings.Join(txt.Txt, ""))
	}
	return z
}

func (z zone) lookup(name string) ([]string, error) {
	if r, ok := z[strings.TrimSuffix(name, ".")]; ok {
		return r, nil
	}
	return nil, &dnsNotFound{name}
}

type dnsNotFound struct{ name string }

func (e *dnsNotFound) Error() string { return "NXDOMAIN " + e.name }

// verify checks every signature of msg and returns their errors.
func verify(t *testing.T, z zone, msg string) []error {
	t.Helper()
	verifs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{LookupTXT: z.lookup, MaxVerifications: 5})
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	for _, v := range verifs {
		errs = append(errs, v.Err)
	}
	return errs
}

func sign(t *testing.T, msg string, ss ...*Signer) string {
	t.Helper()
	h, err := Sign(strings.NewReader(msg), ss...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSignVerify(t *testing.T) {
	for _, algo := range []string{RSA, Ed25519} {
		t.Run(algo, func(t *testing.T) {
			s, record := newKey(t, "example.com", "gh2026", algo)
			if want := "gh2026._domainkey.example.com. IN TXT \"v=DKIM1; k=" + algo + "; p="; !strings.HasPrefix(record, want) {
				t.Errorf("record %q, want it to start %q", record, want)
			}
			z := newZone(t, record)
			h := sign(t, message, s)
			if !strings.HasPrefix(h, "DKIM-Signature:") || !strings.HasSuffix(h, "\r\n") || strings.Count(h, "DKIM-Signature:") != 1 {
				t.Fatalf("header %q", h)
			}
			for _, tag := range []string{"a=" + algo + "-sha256;", "c=relaxed/relaxed;", "d=example.com;", "s=gh2026;"} {
				if !strings.Contains(h, tag) {
					t.Errorf("no %s in %q", tag, h)
				}
			}
			if unfolded := strings.NewReplacer("\r\n ", "", "\r\n", "").Replace(h); !strings.Contains(unfolded, "h=From:From:Reply-To:Subject:Date:To:Cc:") {
				t.Errorf("From not oversigned, or h= not the default: %q", unfolded)
			}
			signed := h + message
			if errs := verify(t, z, signed); len(errs) != 1 || errs[0] != nil {
				t.Fatalf("signed message does not verify: %v\n%s", errs, signed)
			}

			// What happens in transit, and whether the signature holds.
			for _, tc := range []struct {
				name  string
				edit  func(string) string
				holds bool
			}{
				{"untouched", func(m string) string { return m }, true},
				{"body whitespace (relaxed)", func(m string) string { return strings.Replace(m, "Hello Bob,", "Hello   Bob,", 1) }, true},
				{"header folded (relaxed)", func(m string) string {
					return strings.Replace(m, "Subject: quarterly figures", "Subject: quarterly\r\n figures", 1)
				}, true},
				{"trace field added", func(m string) string { return "Received: from gw by mx\r\n" + m }, true},
				{"LF line ends", func(m string) string { return strings.ReplaceAll(m, "\r\n", "\n") }, true},
				{"body changed", func(m string) string { return strings.Replace(m, "attached", "a lie", 1) }, false},
				{"line appended", func(m string) string { return m + "P.S. wire the money\r\n" }, false},
				{"subject changed", func(m string) string { return strings.Replace(m, "quarterly", "urgent", 1) }, false},
				{"second From added (oversigned)", func(m string) string {
					return strings.Replace(m, "From: Alice", "From: CEO <ceo@example.com>\r\nFrom: Alice", 1)
				}, false},
				{"Cc added (signed as absent)", func(m string) string { return strings.Replace(m, "To: bob", "Cc: eve@example.org\r\nTo: bob", 1) }, false},
			} {
				errs := verify(t, z, tc.edit(signed))
				if holds := len(errs) == 1 && errs[0] == nil; holds != tc.holds {
					t.Errorf("%s: holds %v (%v), want %v", tc.name, holds, errs, tc.holds)
				}
			}
		})
	}
}

// A domain that signs with RSA and Ed25519 gets both signatures, each
// verifying on its own; a verifier without Ed25519 still has RSA.
func TestDualSign(t *testing.T) {
	r, rrec := newKey(t, "example.com", "rsa1", RSA)
	e, erec := newKey(t, "example.com", "ed1", Ed25519)
	h := sign(t, message, r, e)
	if n := strings.Count(h, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d signatures: %q", n, h)
	}
	errs := verify(t, newZone(t, rrec, erec), h+message)
	if len(errs) != 2 || errs[0] != nil || errs[1] != nil {
		t.Errorf("%v", errs)
	}
}

// The Writer signs what streams through it, in pieces of any size.
func TestWriterStreams(t *testing.T) {
	s, record := newKey(t, "example.com", "s", Ed25519)
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	var queue bytes.Buffer
	for _, c := range []byte(message) {
		if _, err := w.Write([]byte{c}); err != nil {
			t.Fatal(err)
		}
		queue.WriteByte(c)
	}
	if w.Header() != "" {
		t.Error("a header before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if errs := verify(t, newZone(t, record), w.Header()+queue.String()); len(errs) != 1 || errs[0] != nil {
		t.Errorf("%v", errs)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after Close accepted")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A message that ends inside its header (no blank line) cannot be
// signed: the caller sends it unsigned or refuses it, but is told.
func TestSignHeaderOnly(t *testing.T) {
	s, _ := newKey(t, "example.com", "s", Ed25519)
	if _, err := Sign(strings.NewReader("From: a@example.com\r\nSubject: x\r\n"), s); err == nil {
		t.Error("signed a message without the end of its header")
	}
}

func TestNewSignerHeaders(t *testing.T) {
	_, key := rsaKey(t, 2048)
	for _, tc := range []struct {
		headers []string
		want    string // h=, or the error
	}{
		{nil, strings.Join(DefaultHeaders(), ":")},
		{[]string{"From", "Subject"}, "From:Subject:From"},
		{[]string{"from", "From", "To"}, "from:From:To"},
		{[]string{"Subject"}, "From must be signed"},
		{[]string{"From", "DKIM-Signature"}, "DKIM-Signature cannot be signed"},
		{[]string{"From", "Sub ject"}, `' ' is not allowed`},
		{[]string{"From", ""}, "empty field name"},
	} {
		s, err := NewSigner("Example.COM.", "sel", key, tc.headers)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = strings.Join(s.Headers(), ":")
			if s.Domain() != "example.com" {
				t.Errorf("domain %q", s.Domain())
			}
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.headers, got, tc.want)
		}
	}
	for _, bad := range [][2]string{{"", "s"}, {"example.com", ""}, {"../etc", "s"}, {"example.com", "a/b"}, {"-x.com", "s"}, {"a..com", "s"}} {
		if _, err := NewSigner(bad[0], bad[1], key, nil); err == nil {
			t.Errorf("domain %q selector %q accepted", bad[0], bad[1])
		}
	}
	if _, small := rsaKey(t, 1024); true {
		if _, err := NewSigner("example.com", "s", small, nil); err == nil || !strings.Contains(err.Error(), "1024 bits is too weak") {
			t.Errorf("1024-bit key: %v", err)
		}
	}
}

func rsaKey(t testing.TB, bits int) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), k
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	pkcs1, _ := rsaKey(t, 2048)
	weak, _ := rsaKey(t, 1024)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})
	for _, tc := range []struct {
		name string
		data []byte
		mode os.FileMode
		want string // "" loads
	}{
		{"pkcs1", pkcs1, 0o600, ""},
		{"readonly", pkcs1, 0o400, ""},
		{"group-readable", pkcs1, 0o640, "mode 0640 lets group or others"},
		{"world-readable", pkcs1, 0o644, "mode 0644"},
		{"group-writable", pkcs1, 0o620, "mode 0620"},
		{"weak", weak, 0o600, "RSA key of 1024 bits is too weak"},
		{"ecdsa", ecPEM, 0o600, "RSA or Ed25519 only"},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), 0o600, "not a private key"},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), 0o600, "encrypted"},
		{"empty", nil, 0o600, "no PEM block"},
		{"huge", bytes.Repeat([]byte("x"), maxKeyFile+1), 0o600, "not a key file"},
	} {
		_, err := LoadKey(write(tc.name, tc.data, tc.mode))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadKey(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := LoadKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

func TestCheckRSA(t *testing.T) {
	for bits, ok := range map[int]bool{1024: false, 2047: false, 2048: true, 3072: true, 4096: true, 4097: false, 8192: false} {
		if err := checkRSA(bits); (err == nil) != ok {
			t.Errorf("%d bits: %v", bits, err)
		}
	}
}

func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dkim")
	path, record, err := Keygen("Example.com", "s1", Ed25519, dir)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "example.com.s1.key") {
		t.Errorf("path %s", path)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700 | os.ModeDir} {
		if st, err := os.Stat(p); err != nil || st.Mode() != want {
			t.Errorf("%s: %v %v, want %v", p, st.Mode(), err, want)
		}
	}
	before, _ := os.ReadFile(path)
	if _, _, err := Keygen("example.com", "s1", RSA, dir); err == nil || !strings.Contains(err.Error(), "never replaced") {
		t.Errorf("second keygen: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the key was replaced")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
	if !strings.HasPrefix(record, `s1._domainkey.example.com. IN TXT "v=DKIM1; k=ed25519; p=`) || strings.Count(record, `"`) != 2 {
		t.Errorf("record %q", record)
	}
	for _, bad := range [][3]string{{"example.com", "s2", "dsa"}, {"../x", "s", RSA}, {"example.com", "a/../../b", RSA}} {
		if _, _, err := Keygen(bad[0], bad[1], bad[2], dir); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// An RSA record is longer than one TXT string holds: it is split, and
// joined again it is the whole value.
func TestRecordSplit(t *testing.T) {
	_, k := rsaKey(t, 4096)
	r, err := Record("example.com", "big", &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	z := newZone(t, r) // fails on a string over 255 bytes
	v := z["big._domainkey.example.com"][0]
	if !strings.HasPrefix(v, "v=DKIM1; k=rsa; p=") || len(v) < 700 || strings.Count(r, `" "`) < 2 {
		t.Errorf("%d bytes: %q", len(v), r)
	}
	if _, err := Record("example.com", "x", "not a key"); err == nil {
		t.Error("a string as a key")
	}
}

func TestKeyring(t *testing.T) {
	dir := t.TempDir()
	gen := func(domain, sel, algo string) string {
		p, _, err := Keygen(domain, sel, algo, dir)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ex := gen("example.com", "a", Ed25519)
	exRSA := gen("example.com", "b", RSA)
	sub := gen("sales.example.com", "a", Ed25519)
	org := gen("example.org", "a", Ed25519)
	k, err := NewKeyring([]Config{
		{Domain: "example.com", Selector: "a", KeyFile: ex, Algorithm: Ed25519, Subdomains: true},
		{Domain: "example.com", Selector: "b", KeyFile: exRSA, Subdomains: true},
		{Domain: "sales.example.com", Selector: "a", KeyFile: sub},
		{Domain: "example.org", Selector: "a", KeyFile: org, Headers: []string{"From", "Subject"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 4 {
		t.Errorf("Len %d", k.Len())
	}
	// An entry Add refuses leaves the keyring as it was: the relay signs
	// with the others.
	if err := k.Add(Config{Domain: "example.com", Selector: "a", KeyFile: exRSA, Subdomains: true}); err == nil {
		t.Error("a selector given twice was added")
	}
	if err := k.Add(Config{Domain: "example.net", Selector: "a", KeyFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing key file was added")
	}
	if k.Len() != 4 {
		t.Errorf("Len %d after refused entries", k.Len())
	}
	for _, tc := range []struct{ from, want string }{
		{"example.com", "example.com/a example.com/b"},
		{"EXAMPLE.com.", "example.com/a example.com/b"},
		{"sales.example.com", "sales.example.com/a"},
		{"eu.sales.example.com", "example.com/a example.com/b"}, // sales does not sign for subdomains: its parent does
		{"mail.example.com", "example.com/a example.com/b"},
		{"example.org", "example.org/a"},
		{"mail.example.org", ""},
		{"example.net", ""},
		{"com", ""},
		{"", ""},
	} {
		var got []string
		for _, s := range k.For(tc.from) {
			got = append(got, s.Domain()+"/"+s.Selector())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("For(%q) = %q, want %q", tc.from, got, tc.want)
		}
	}
	if (*Keyring)(nil).For("example.com") != nil {
		t.Error("nil keyring signs")
	}

	for _, tc := range []struct {
		cfg  []Config
		want string
	}{
		{[]Config{{Domain: "example.com", Selector: "a", KeyFile: ex, Algorithm: RSA}}, "dkim[0] (example.com): algorithm is rsa, but " + ex + " holds a ed25519 key"},
		{[]Config{{Domain: "example.com", Selector: "a", KeyFile: ex, Algorithm: "dsa"}}, `algorithm "dsa"`},
		{[]Config{{Domain: "example.com", Selector: "a", KeyFile: ex}, {Domain: "Example.com", Selector: "A", KeyFile: ex}}, "dkim[1] (Example.com): selector a is configured twice"},
		{[]Config{{Domain: "example.com", Selector: "a", KeyFile: ex}, {Domain: "example.com", Selector: "b", KeyFile: exRSA, Subdomains: true}}, "subdomains must be the same"},
		{[]Config{{Domain: "example.com", Selector: "a", KeyFile: filepath.Join(dir, "nope")}}, "no such file"},
		{[]Config{{Domain: "example.com", Selector: "a", KeyFile: ex, Headers: []string{"To"}}}, "From must be signed"},
	} {
		if _, err := NewKeyring(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	pkcs1, _ := rsaKey(f, 2048)
	f.Add(pkcs1)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+Hy6Ynm8R0vJ9M4L7Y9v8mK3n4w2Qm6Xx0vS1yQ8aB\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParseKey(data)
		if err != nil {
			return
		}
		// Whatever parses is a key DKIM may use, and signs.
		if _, err := NewSigner("example.com", "fuzz", key, nil); err != nil {
			t.Fatalf("parsed a key NewSigner refuses: %v", err)
		}
	})
}

// Signing a 10 KiB message: the throughput reported in the relay's
// benchmark notes. RSA's cost is the private-key operation, Ed25519's
// the hashing; both hash the body once.
func BenchmarkSign(b *testing.B) {
	var body strings.Builder
	for body.Len() < 10<<10 {
		fmt.Fprintf(&body, "Line %d of the quarterly report, with some words to canonicalize.\r\n", body.Len())
	}
	msg := []byte(message + body.String())
	for _, algo := range []string{RSA, Ed25519} {
		b.Run(algo, func(b *testing.B) {
			s, _ := newKey(b, "example.com", "bench", algo)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Sign(bytes.NewReader(msg), s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
