package mailauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: quarterly figures\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n\r\nthe figures are attached.\r\n"

// Keys are slow to make: once per test binary.
var testKeys = sync.OnceValues(func() (*rsa.PrivateKey, ed25519.PrivateKey) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return rk, ek
})

// dkimRecord is the TXT record publishing key's public half.
func dkimRecord(t *testing.T, key crypto.Signer) string {
	t.Helper()
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	t.Fatalf("key type %T", key)
	return ""
}

func sign(t *testing.T, msg, domain, selector string, key crypto.Signer) string {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: selector, Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestDKIM(t *testing.T) {
	rk, ek := testKeys()
	ts := newTestDNS(t)
	ts.addTXT("rsa._domainkey.example.com", dkimRecord(t, rk))
	ts.addTXT("ed._domainkey.example.com", dkimRecord(t, ek))
	ts.addTXT("rsa._domainkey.other.test", dkimRecord(t, rk))
	ts.set(func() { ts.servfail["temp._domainkey.example.com."] = true })

	rsaSigned := sign(t, testMessage, "example.com", "rsa", rk)
	edSigned := sign(t, testMessage, "example.com", "ed", ek)
	both := sign(t, edSigned, "other.test", "rsa", rk)

	type want struct {
		domain, selector, algo string
		status                 DKIMStatus
	}
	tests := []struct {
		name  string
		msg   string
		max   int
		chunk int // write in pieces of this size (0: at once)
		want  []want
	}{
		{name: "rsa pass", msg: rsaSigned, want: []want{{"example.com", "rsa", "rsa-sha256", DKIMPass}}},
		{name: "ed25519 pass", msg: edSigned, want: []want{{"example.com", "ed", "ed25519-sha256", DKIMPass}}},
		{name: "streamed a byte at a time", msg: rsaSigned, chunk: 1, want: []want{{"example.com", "rsa", "rsa-sha256", DKIMPass}}},
		{name: "two signatures", msg: both, want: []want{
			{"other.test", "rsa", "rsa-sha256", DKIMPass}, {"example.com", "ed", "ed25519-sha256", DKIMPass}}},
		{name: "MaxVerifications", msg: both, max: 1, want: []want{{"other.test", "rsa", "rsa-sha256", DKIMPass}}},
		{name: "body altered", msg: strings.Replace(rsaSigned, "attached", "attacked", 1),
			want: []want{{"example.com", "rsa", "rsa-sha256", DKIMFail}}},
		{name: "body altered, ed25519", msg: strings.Replace(edSigned, "attached", "attacked", 1),
			want: []want{{"example.com", "ed", "ed25519-sha256", DKIMFail}}},
		{name: "signed header altered", msg: strings.Replace(rsaSigned, "quarterly", "yearly", 1),
			want: []want{{"example.com", "rsa", "rsa-sha256", DKIMFail}}},
		{name: "no key published", msg: sign(t, testMessage, "example.com", "gone", rk),
			want: []want{{"example.com", "gone", "rsa-sha256", DKIMPermError}}},
		{name: "key lookup fails", msg: sign(t, testMessage, "example.com", "temp", rk),
			want: []want{{"example.com", "temp", "rsa-sha256", DKIMTempError}}},
		{name: "wrong key", msg: strings.Replace(sign(t, testMessage, "example.com", "rsa", ek), "s=rsa", "s=ed", 1),
			want: []want{{"example.com", "ed", "ed25519-sha256", DKIMFail}}},
		{name: "unsigned", msg: testMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := NewDKIMVerifier(context.Background(), ts.resolver(), DKIMOptions{MaxVerifications: tc.max, LookupTimeout: time.Second})
			if tc.chunk == 0 {
				v.Write([]byte(tc.msg))
			} else {
				for i := 0; i < len(tc.msg); i += tc.chunk {
					v.Write([]byte(tc.msg[i:min(i+tc.chunk, len(tc.msg))]))
				}
			}
			v.Close()
			res, err := v.Results()
			if err != nil {
				t.Fatal(err)
			}
			var got []want
			for _, r := range res {
				got = append(got, want{r.Domain, r.Selector, r.Algorithm, r.Status})
				if (r.Status == DKIMPass) != (r.Reason == "") {
					t.Errorf("status %s with reason %q", r.Status, r.Reason)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", res, tc.want)
			}
		})
	}
}

func TestVerifyDKIMReadError(t *testing.T) {
	ts := newTestDNS(t)
	msg := io.MultiReader(strings.NewReader("From: a@b.test\r\n"), iotest.ErrReader(errors.New("connection lost")))
	if res, err := VerifyDKIM(context.Background(), ts.resolver(), msg, DKIMOptions{}); err == nil {
		t.Errorf("read error: %+v, no error", res)
	}
}

func TestHeaderEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{{"A: b\r\n\r\nbody", 6}, {"A: b\n\nbody", 5}, {"\r\nbody", 0}, {"A: b\r\n", -1}, {"A: b\r\n c\r\n\r\n", 10}} {
		if got := headerEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("headerEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// FuzzSignatureTags: the header splitter and tag parser that name each
// signature never panic, and find every DKIM-Signature field's d=.
func FuzzSignatureTags(f *testing.F) {
	f.Add("DKIM-Signature: v=1; a=rsa-sha256; d=example.com;\r\n s=sel; h=from; bh=x; b=y\r\nFrom: a@b\r\n\r\n")
	f.Add("dkim-signature :d= a.b ;;=;s\r\n\t=x\r\n")
	f.Add("\r\n\r\n")
	f.Fuzz(func(t *testing.T, head string) {
		for _, tags := range signatureTags([]byte(head)) {
			for k := range tags {
				if k == "" {
					t.Fatalf("empty tag name from %q", head)
				}
			}
		}
	})
}
