package tlscert

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A generated certificate is kept; a replaced one is served without a
// restart; a broken replacement keeps the old one in service.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if made, err := EnsureSelfSigned(cert, key, "one.example"); err != nil || !made {
		t.Fatalf("made %v, %v", made, err)
	}
	if made, _ := EnsureSelfSigned(cert, key, "two.example"); made {
		t.Fatal("an existing certificate was replaced")
	}
	var cs Store
	if err := cs.SetFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	name := func() string {
		c, err := cs.Get(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.Subject.CommonName
	}
	if n := name(); n != "one.example" {
		t.Fatalf("serving %q", n)
	}
	// The operator installs a new certificate.
	os.Remove(cert)
	EnsureSelfSigned(cert, key, "two.example")
	later := time.Now().Add(time.Minute)
	os.Chtimes(cert, later, later)
	cs.checked = time.Time{} // as if the check interval had passed
	if n := name(); n != "two.example" {
		t.Fatalf("after replacing the file: serving %q", n)
	}
	os.WriteFile(cert, []byte("garbage"), 0o644)
	os.Chtimes(cert, later.Add(time.Minute), later.Add(time.Minute))
	cs.checked = time.Time{}
	if n := name(); n != "two.example" {
		t.Fatalf("after a broken file: serving %q", n)
	}
}
