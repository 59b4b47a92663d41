package oauth

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestXOAUTH2(t *testing.T) {
	// Google's documented example (developers.google.com/gmail/imap/xoauth2-protocol).
	got := XOAUTH2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
	want := "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
	if string(got) != want {
		t.Errorf("XOAUTH2 %q, want %q", got, want)
	}
	if b := base64.StdEncoding.EncodeToString(got); !strings.HasPrefix(b, "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxb") {
		t.Errorf("base64 %s differs from Google's example", b)
	}
}

func TestOAuthBearer(t *testing.T) {
	// RFC 7628 4.1, the IMAP example's initial client response.
	const rfc = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
	got := OAuthBearer("user@example.com", "server.example.com", 143, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==")
	want := "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
	if string(got) != want {
		t.Errorf("OAuthBearer %q, want %q", got, want)
	}
	if b := base64.StdEncoding.EncodeToString(got); b != rfc {
		t.Errorf("base64 %s, want RFC 7628's %s", b, rfc)
	}
	if got := OAuthBearer("a,b=c", "h", 25, "t"); !strings.HasPrefix(string(got), "n,a=a=2Cb=3Dc,\x01") {
		t.Errorf("saslname not escaped: %q", got)
	}
}

func TestFailureReason(t *testing.T) {
	for _, tc := range []struct{ challenge, want string }{
		{`{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}`,
			"status invalid_token, scope example_scope"},
		{`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`, "status 401, schemes bearer, scope https://mail.google.com/"},
		{`{"status":400}`, "status 400"},
		{`{"status":"bad\r\nline"}`, "status bad??line"},
		{`{}`, "the server refused the token (no status given)"},
		{`ya29.secret-token-echoed`, "the server's failure challenge is not JSON (24 bytes)"},
		{``, "the server's failure challenge is not JSON (0 bytes)"},
	} {
		if got := FailureReason([]byte(tc.challenge)); got != tc.want {
			t.Errorf("FailureReason(%q) = %q, want %q", tc.challenge, got, tc.want)
		}
	}
	if got := FailureReason([]byte(`{"status":"invalid_token","scope":"` + strings.Repeat("é", 300) + `"}`)); len(got) > 200 || !strings.HasSuffix(got, "…") {
		t.Errorf("long reason of %d bytes: %q", len(got), got)
	}
}

func FuzzFailureReason(f *testing.F) {
	f.Add([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := FailureReason(b); len(got) > 200 || strings.ContainsAny(got, "\r\n") {
			t.Fatalf("%q", got)
		}
	})
}

func TestWriteToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "fetch_o365.refresh")
	if err := os.WriteFile(file, []byte("OLD\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteToken(file, "NEW"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode(), err)
	}
	if b, _ := os.ReadFile(file); string(b) != "NEW\n" {
		t.Errorf("content %q", b)
	}
	// Atomic: the file was replaced by a rename (a new inode), and no
	// temporary file is left.
	if os.SameFile(before, st) {
		t.Error("the file was rewritten in place, not replaced")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the directory, want 1", len(ents))
	}
	// A failed write leaves nothing behind.
	if err := WriteToken(filepath.Join(dir, "missing", "x.refresh"), "T"); err == nil {
		t.Error("write into a missing directory succeeded")
	}
	if err := WriteToken(file, " \n"); err == nil {
		t.Error("an empty token written")
	}
}
