// Package adminauth keeps the credentials of the web console and the REST
// API on the data disk: API tokens, stored only as hashes and shown once
// when made, each with a role; and the web console's password for the
// user admin, as a bcrypt hash. The CLI writes them; the admin service
// reads them, and sees a revoked token or a changed password at the next
// request.
package adminauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"gatehouse/safeio"
)

// Roles.
const (
	RoleRead  = "read"  // GET only
	RoleAdmin = "admin" // everything
)

// Files in the admin directory (layout.Paths.Admin).
const (
	TokensFile   = "tokens.json"
	PasswordFile = "passwd"
)

// tokenPrefix marks a Gatehouse API token, so that a secret scanner (and
// an operator) can tell one when it leaks.
const tokenPrefix = "ghat_"

// Token is one API token as stored: its name, role and the SHA-256 of
// the secret (which is 32 random bytes: a hash, not bcrypt, is enough,
// and keeps every request cheap).
type Token struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Hash    string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// validName: what a token may be called (it appears in every log line
// of its requests).
func validName(n string) bool {
	return n != "" && len(n) <= 64 && strings.Trim(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@") == ""
}

func hashOf(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// readTokens reads the token file; none when it does not exist.
func readTokens(dir string) ([]Token, error) {
	b, err := os.ReadFile(filepath.Join(dir, TokensFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ts []Token
	if err := json.Unmarshal(b, &ts); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, TokensFile), err)
	}
	return ts, nil
}

func writeTokens(dir string, ts []Token) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(ts, "", "  ")
	if err != nil {
		return err
	}
	return safeio.WriteFile(filepath.Join(dir, TokensFile), append(b, '\n'), 0o600)
}

// lock holds the admin directory's lock until the returned func: two
// `gatehouse api token` commands at once must not lose each other's
// change (a revocation least of all).
func lock(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// CreateToken makes a token called name with role and returns its secret,
// which is not kept: it is shown once.
func CreateToken(dir, name, role string) (string, error) {
	if !validName(name) {
		return "", fmt.Errorf("token name %q: 1 to 64 letters, digits and -_.@", name)
	}
	if role != RoleRead && role != RoleAdmin {
		return "", fmt.Errorf("role %q: read or admin", role)
	}
	unlock, err := lock(dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	ts, err := readTokens(dir)
	if err != nil {
		return "", err
	}
	if slices.ContainsFunc(ts, func(t Token) bool { return t.Name == name }) {
		return "", fmt.Errorf("a token called %q exists; revoke it first", name)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	ts = append(ts, Token{Name: name, Role: role, Hash: hashOf(secret), Created: time.Now().UTC().Truncate(time.Second)})
	return secret, writeTokens(dir, ts)
}

// RevokeToken removes the token called name.
func RevokeToken(dir, name string) error {
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	ts, err := readTokens(dir)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ts, func(t Token) bool { return t.Name == name })
	if i < 0 {
		return fmt.Errorf("no token called %q", name)
	}
	return writeTokens(dir, slices.Delete(ts, i, i+1))
}

// Tokens lists the tokens (without their hashes).
func Tokens(dir string) ([]Token, error) {
	ts, err := readTokens(dir)
	for i := range ts {
		ts[i].Hash = ""
	}
	return ts, err
}

// SetPassword sets the web console's password for the user admin.
func SetPassword(dir, password string) error {
	if len(password) < 10 {
		return errors.New("the password must have at least 10 characters")
	}
	if len(password) > 72 {
		return errors.New("the password may have at most 72 bytes (bcrypt's limit)")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return safeio.WriteFile(filepath.Join(dir, PasswordFile), append(h, '\n'), 0o600)
}

// Identity is who a request comes from: a token's name and role, or
// "admin" by password.
type Identity struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Via is how it proved itself: token, password or certificate.
	Via string `json:"via"`
	// cred is the stored credential it matched (the token's hash, the
	// password's hash), so that a session ends when it is revoked.
	cred string
}

// Store answers who a secret belongs to, from the files as they are now:
// it re-reads them when they change (by size, time and inode), so that a
// revoked token stops working at the next request.
type Store struct {
	dir string

	mu       sync.Mutex
	tokStamp fileStamp
	tokens   map[string]Token // by hash
	pwStamp  fileStamp
	pwHash   []byte
	loadErr  error
}

// fileStamp tells a changed file.
type fileStamp struct {
	size  int64
	mod   time.Time
	ino   uint64
	exist bool
}

// NewStore reads credentials from dir.
func NewStore(dir string) *Store { return &Store{dir: dir} }

// refresh re-reads what changed. The caller holds mu.
func (s *Store) refresh() {
	if st := stamp(filepath.Join(s.dir, TokensFile)); st != s.tokStamp || s.tokens == nil {
		ts, err := readTokens(s.dir)
		s.loadErr = err
		m := map[string]Token{}
		if err == nil {
			for _, t := range ts {
				m[t.Hash] = t
			}
		}
		// A file that does not parse admits no token (fail closed).
		s.tokens, s.tokStamp = m, st
	}
	if st := stamp(filepath.Join(s.dir, PasswordFile)); st != s.pwStamp {
		b, err := os.ReadFile(filepath.Join(s.dir, PasswordFile))
		s.pwHash = nil
		if err == nil {
			s.pwHash = []byte(strings.TrimSpace(string(b)))
		}
		s.pwStamp = st
	}
}

// Err is why the token file could not be read at the last look, if so.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	return s.loadErr
}

// Token says whose secret is a token.
func (s *Store) Token(secret string) (Identity, bool) {
	if !strings.HasPrefix(secret, tokenPrefix) || len(secret) > 100 {
		return Identity{}, false
	}
	h := hashOf(secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	for hash, t := range s.tokens {
		if subtle.ConstantTimeCompare([]byte(hash), []byte(h)) == 1 {
			return Identity{Name: t.Name, Role: t.Role, Via: "token", cred: hash}, true
		}
	}
	return Identity{}, false
}

// Password checks the web console's password for admin.
func (s *Store) Password(user, password string) (Identity, bool) {
	s.mu.Lock()
	s.refresh()
	h := s.pwHash
	s.mu.Unlock()
	if len(h) == 0 || len(password) > 72 {
		return Identity{}, false
	}
	if bcrypt.CompareHashAndPassword(h, []byte(password)) != nil || user != "admin" {
		return Identity{}, false
	}
	return Identity{Name: "admin", Role: RoleAdmin, Via: "password", cred: string(h)}, true
}

// HasPassword says whether a web password is set.
func (s *Store) HasPassword() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	return len(s.pwHash) > 0
}

// Valid says whether the credential id was proved with still stands: the
// token is not revoked, the password not changed. A certificate's
// identity stands as long as its connection.
func (s *Store) Valid(id Identity) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	switch id.Via {
	case "token":
		t, ok := s.tokens[id.cred]
		return ok && t.Name == id.Name && t.Role == id.Role
	case "password":
		return subtle.ConstantTimeCompare(s.pwHash, []byte(id.cred)) == 1
	}
	return id.Via == "certificate"
}

// Certificate is the identity of an API client that presented a
// certificate the configured client CA signed: its subject's common name,
// with the role the config gives such clients.
func Certificate(commonName, role string) Identity {
	return Identity{Name: "cert:" + commonName, Role: role, Via: "certificate"}
}
