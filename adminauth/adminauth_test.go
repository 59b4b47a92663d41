package adminauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(dir)
	read, err := CreateToken(dir, "nagios", RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := CreateToken(dir, "ops", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ name, role string }{{"nagios", RoleRead}, {"", RoleRead}, {"a b", RoleRead}, {"x", "root"}} {
		if _, err := CreateToken(dir, bad.name, bad.role); err == nil {
			t.Errorf("CreateToken(%q, %q) succeeded", bad.name, bad.role)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, TokensFile))
	if strings.Contains(string(b), read) || strings.Contains(string(b), admin[5:]) {
		t.Error("a secret is stored in the clear")
	}
	if fi, _ := os.Stat(filepath.Join(dir, TokensFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode())
	}
	id, ok := s.Token(admin)
	if !ok || id.Name != "ops" || id.Role != RoleAdmin || id.Via != "token" {
		t.Fatalf("Token(admin) = %+v, %v", id, ok)
	}
	if _, ok := s.Token(admin + "x"); ok {
		t.Error("a wrong secret is taken")
	}
	if _, ok := s.Token("Bearer " + admin); ok {
		t.Error("a secret without the prefix is taken")
	}
	if err := RevokeToken(dir, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Token(admin); ok || s.Valid(id) {
		t.Error("a revoked token still works")
	}
	if ts, _ := Tokens(dir); len(ts) != 1 || ts[0].Name != "nagios" || ts[0].Hash != "" {
		t.Errorf("Tokens %+v", ts)
	}
	// A token file that does not parse admits no one.
	os.WriteFile(filepath.Join(dir, TokensFile), []byte("{"), 0o600)
	if _, ok := s.Token(read); ok || s.Err() == nil {
		t.Error("a broken token file admits a token")
	}
}

func TestPassword(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(dir)
	if _, ok := s.Password("admin", "anything at all"); ok || s.HasPassword() {
		t.Error("a password works before one is set")
	}
	if err := SetPassword(dir, "short"); err == nil {
		t.Error("a 5-character password is taken")
	}
	if err := SetPassword(dir, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	id, ok := s.Password("admin", "correct horse battery")
	if !ok || id.Role != RoleAdmin {
		t.Fatalf("Password = %+v %v", id, ok)
	}
	for _, bad := range [][2]string{{"admin", "correct horse batterY"}, {"root", "correct horse battery"}} {
		if _, ok := s.Password(bad[0], bad[1]); ok {
			t.Errorf("Password(%q, %q) taken", bad[0], bad[1])
		}
	}
	if err := SetPassword(dir, "another good one"); err != nil {
		t.Fatal(err)
	}
	if s.Valid(id) {
		t.Error("a session made with the old password stands")
	}
}
