// Package oauth gets and keeps the OAuth2 access tokens that collector
// accounts (IMAP, POP3) and smart-host connectors log in with, by SASL
// XOAUTH2 or OAUTHBEARER, at Exchange Online and Gmail: the client-
// credentials grant (app-only, with a client secret or a certificate), the
// refresh-token grant (one user's mailbox, with the refresh token the
// provider rotates), and the device login that gets the first refresh token.
package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"gatehouse/config"
)

// Source gives one account's access token: cached, fetched again shortly
// before it expires (margin min(5m, lifetime/4)), and after Invalidate.
// Safe for concurrent use; concurrent callers share one fetch.
type Source struct {
	name   string
	c      *config.OAuth2
	dir    string
	read   func(string) ([]byte, error)
	client *http.Client
	host   string
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	token   string
	expires time.Time
	renew   time.Time // when a Token call fetches anew: expires less the margin
	fetched time.Time
	lastErr string
	flight  *flight
	// A failed fetch, answered again until failedUntil; gen counts the
	// grants (SetRefreshToken makes a new one).
	failErr     error
	failedUntil time.Time
	gen         uint64

	// A rotated refresh token that WriteToken could not save: used until a
	// file is newer. Only the fetch in flight touches them.
	unsaved     string
	unsavedSeed string
}

// flight is the one fetch that callers wait for.
type flight struct {
	gen   uint64 // the grant it fetches for (see Source.gen)
	done  chan struct{}
	token string
	err   error
}

// Status is what the status page shows of a source.
type Status struct {
	Expires   time.Time `json:"expires,omitzero"`
	Fetched   time.Time `json:"fetched,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// Bounds of a fetch and of the answers quoted in errors.
const (
	fetchTimeout    = time.Minute
	defaultLifetime = time.Hour // a token response without expires_in
	maxMargin       = 5 * time.Minute
	retryAfter      = time.Minute // a failed early renewal, while the token still works
	maxProviderText = 300
)

// New makes the source of the account called name ("fetch:o365",
// "connector:m365": used in errors, logs and as the file name of its
// rotated refresh token in dir). read reads a file the config names
// (secret, key, certificate, refresh token): the caller's privilege-aware
// reader. dir is the relay's own directory (0700, writable). client is the
// HTTP client (nil: NewClient(c, read)).
func New(name string, c *config.OAuth2, dir string, read func(string) ([]byte, error), client *http.Client) *Source {
	s := &Source{name: name, c: c, dir: dir, read: read, now: time.Now,
		log: slog.Default().With("subsystem", "oauth2", "account", name)}
	if u, err := url.Parse(c.TokenURL); err == nil {
		s.host = u.Hostname()
	}
	if client != nil {
		s.client = limited(client)
	}
	return s
}

// httpClient is the client for the token endpoint, made on first use: a
// CA file that could not be read (not there yet, not yet readable for the
// relay) is tried again at the next fetch, not held against the account.
func (s *Source) httpClient() (*http.Client, error) {
	if s.client != nil {
		return s.client, nil
	}
	client, err := NewClient(s.c, s.read)
	if err != nil {
		return nil, fmt.Errorf("oauth2: %s: %w", s.name, err)
	}
	s.client = limited(client)
	return s.client, nil
}

// Token is the account's access token: the cached one, or a new one when it
// is within its margin of expiry, was invalidated, or there is none yet.
// ctx bounds the wait, not the fetch, which other callers may share.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	if s.token != "" && s.now().Before(s.renew) {
		t := s.token
		s.mu.Unlock()
		return t, nil
	}
	if s.failErr != nil && s.now().Before(s.failedUntil) {
		// A fetch failed a moment ago: every session of every hop
		// would ask again. Not before retryAfter.
		err := s.failErr
		s.mu.Unlock()
		return "", err
	}
	f := s.flight
	if f == nil {
		f = &flight{gen: s.gen, done: make(chan struct{})}
		s.flight = f
		go s.run(context.WithoutCancel(ctx), f)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("oauth2: %s: waiting for the token: %w", s.name, ctx.Err())
	}
}

// Invalidate drops the cached token if it is still tok (the server
// refused it): the next Token fetches anew. A token fetched since, by
// another session, is kept.
func (s *Source) Invalidate(tok string) {
	s.mu.Lock()
	if s.token == tok {
		s.token, s.renew = "", time.Time{}
	}
	s.mu.Unlock()
}

// Status is the last fetch's time, the token's expiry and the last error.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Expires: s.expires, Fetched: s.fetched, LastError: s.lastErr}
}

// run does the fetch of flight f and keeps its result.
func (s *Source) run(ctx context.Context, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	tok, note, err := s.fetch(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(f.done)
	s.flight = nil
	now := s.now()
	if f.gen != s.gen {
		// A sign-in replaced the grant while this fetch ran for the
		// old one: its waiters get what it brought, the source keeps
		// nothing of it.
		if err == nil {
			f.token = tok.AccessToken
		}
		f.err = err
		return
	}
	if err != nil {
		s.lastErr = err.Error()
		if s.token != "" && now.Before(s.expires) {
			// Renewal within the margin failed, but the token still
			// works: use it, and try again a little later.
			s.log.Warn("early renewal of the access token failed; the current one is used until it expires", "expires", s.expires, "err", err)
			s.renew = now.Add(retryAfter)
			if s.renew.After(s.expires) {
				s.renew = s.expires
			}
			f.token = s.token
			return
		}
		s.log.Warn("fetching an access token failed", "err", err)
		s.failErr, s.failedUntil = err, now.Add(retryAfter)
		f.err = err
		return
	}
	s.failErr = nil
	life := lifetime(tok)
	s.token, s.fetched, s.expires = tok.AccessToken, now, now.Add(life)
	s.renew = s.expires.Add(-min(maxMargin, life/4))
	s.lastErr = note
	f.token = tok.AccessToken
	s.log.Debug("fetched an access token", "expires", s.expires)
}

// lifetime is how long a new token is valid: x/oauth2 turned expires_in
// into Expiry a moment ago; without expires_in, an hour.
func lifetime(t *oauth2.Token) time.Duration {
	if t.Expiry.IsZero() {
		return defaultLifetime
	}
	return max(time.Until(t.Expiry).Round(time.Second), 0)
}

// fetch gets a new access token by the account's grant. note is an error
// that did not stop it (a rotated refresh token that could not be saved).
func (s *Source) fetch(ctx context.Context) (tok *oauth2.Token, note string, err error) {
	client, err := s.httpClient() // only the fetch in flight touches it
	if err != nil {
		return nil, "", err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, client)
	cc := clientcredentials.Config{
		ClientID:  s.c.ClientID,
		TokenURL:  s.c.TokenURL,
		Scopes:    s.c.Scopes,
		AuthStyle: oauth2.AuthStyleInParams, // no probing: each answer counts (invalid_grant, rotation)
	}
	if s.c.ClientSecretFile != "" {
		if cc.ClientSecret, err = s.secret(); err != nil {
			return nil, "", err
		}
	}
	cc.EndpointParams = url.Values{}
	if s.c.ClientCertificate != "" {
		// Also for the refresh grant of a confidential client.
		a, err := s.assertion()
		if err != nil {
			return nil, "", fmt.Errorf("oauth2: %s: %w", s.name, err)
		}
		cc.EndpointParams.Set("client_assertion_type", assertionType)
		cc.EndpointParams.Set("client_assertion", a)
	}
	if s.c.Delegated() {
		return s.refreshGrant(ctx, &cc)
	}
	tok, err = cc.Token(ctx)
	if err != nil {
		return nil, "", s.endpointError(err)
	}
	return tok, "", nil
}

// refreshGrant is the refresh-token grant (RFC 6749 6): x/oauth2's
// client-credentials request with its grant_type replaced, so that the
// scopes are sent too (Microsoft wants them).
func (s *Source) refreshGrant(ctx context.Context, cc *clientcredentials.Config) (*oauth2.Token, string, error) {
	rt, seed, err := s.refreshToken()
	if err != nil {
		return nil, "", err
	}
	cc.EndpointParams.Set("grant_type", "refresh_token")
	cc.EndpointParams.Set("refresh_token", rt)
	tok, err := cc.Token(ctx)
	if err != nil {
		return nil, "", s.endpointError(err)
	}
	var note string
	if nt := strings.TrimSpace(tok.RefreshToken); nt != "" && nt != rt {
		// Rotation: keep the new refresh token before using the access
		// token; the old one may stop working.
		if err := s.writeRotated(nt, seed); err != nil {
			note = fmt.Sprintf("oauth2: %s: the provider rotated the refresh token and it could not be saved (kept in memory until a restart): %v", s.name, err)
			s.log.Error("saving the rotated refresh token failed", "err", err)
			s.unsaved, s.unsavedSeed = nt, seed
		} else {
			s.unsaved = ""
		}
	}
	return tok, note, nil
}

// refreshToken is the refresh token in use, and the seed to keep with its
// successor: the fingerprint of the operator's refresh_token_file as it
// is now. The relay's own token (rotated, or brought by oauth2-login) is
// used while that file still holds what it held when the relay's token
// was stored; a file whose content changed is a new sign-in and wins.
// Content, not mtimes: a restore or a config sync that rewrites the file
// with an old token changes nothing, and a token the provider rotated
// away is never sent again (some providers revoke the grant for that).
func (s *Source) refreshToken() (tok, seed string, err error) {
	cfgTok := ""
	if s.c.RefreshTokenFile != "" {
		b, err := s.read(s.c.RefreshTokenFile)
		if err != nil {
			return "", "", fmt.Errorf("oauth2: %s: refresh token: %w", s.name, err)
		}
		cfgTok = strings.TrimSpace(string(b))
	}
	seed = fingerprint(cfgTok)
	own, ownSeed := s.readRotated()
	switch {
	case s.unsaved != "" && s.unsavedSeed == seed:
		return s.unsaved, seed, nil
	case own != "" && (cfgTok == "" || ownSeed == seed):
		return own, seed, nil
	case cfgTok != "":
		return cfgTok, seed, nil
	case s.c.RefreshTokenFile != "":
		return "", "", fmt.Errorf("oauth2: %s: refresh token file %s is empty: sign in with gatehouse fetch oauth2-login %s", s.name, s.c.RefreshTokenFile, s.account())
	}
	return "", "", fmt.Errorf("oauth2: %s: no refresh token yet: sign in with gatehouse fetch oauth2-login %s", s.name, s.account())
}

// fingerprint identifies a refresh token without keeping it: "" for none.
func fingerprint(tok string) string {
	if tok == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:16])
}

// readRotated reads the relay's own token file: the token, then the seed
// (fingerprint of the operator's file it was stored against) on a line
// of its own.
func (s *Source) readRotated() (tok, seed string) {
	b, err := os.ReadFile(s.rotatedFile())
	if err != nil {
		return "", ""
	}
	tok, seed, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(tok), strings.TrimSpace(seed)
}

// writeRotated stores the relay's own token with its seed.
func (s *Source) writeRotated(tok, seed string) error {
	if seed == "" {
		return WriteToken(s.rotatedFile(), tok)
	}
	return WriteToken(s.rotatedFile(), strings.TrimSpace(tok)+"\n"+seed)
}

// rotatedFile is where the relay keeps the account's rotated refresh token.
// The name is the account's with every octet but letters, digits, '.'
// and '-' written as _XX: no two accounts share a file ("müller" and
// "möller" would, if they were merely replaced).
func (s *Source) rotatedFile() string {
	var b strings.Builder
	for i := 0; i < len(s.name); i++ {
		switch c := s.name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.' && i > 0, c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return filepath.Join(s.dir, b.String()+".refresh")
}

// account is the name oauth2-login knows the account by.
func (s *Source) account() string {
	if a, ok := strings.CutPrefix(s.name, "fetch:"); ok {
		return a
	}
	return s.name
}

// secret is the client secret, trimmed of surrounding white space.
func (s *Source) secret() (string, error) {
	b, err := s.read(s.c.ClientSecretFile)
	if err != nil {
		return "", fmt.Errorf("oauth2: %s: client secret: %w", s.name, err)
	}
	sec := strings.TrimSpace(string(b))
	if sec == "" {
		return "", fmt.Errorf("oauth2: %s: client_secret_file %s is empty", s.name, s.c.ClientSecretFile)
	}
	return sec, nil
}

// assertion is a fresh client assertion signed with the account's
// certificate key (read each time: a renewed certificate takes effect).
func (s *Source) assertion() (string, error) {
	cert, err := s.read(s.c.ClientCertificate)
	if err != nil {
		return "", fmt.Errorf("client_certificate: %w", err)
	}
	key, err := s.read(s.c.ClientKey)
	if err != nil {
		return "", fmt.Errorf("client_key: %w", err)
	}
	sg, err := newSigner(cert, key)
	if err != nil {
		return "", err
	}
	return sg.assertion(s.c.ClientID, s.c.TokenURL, s.now())
}

// endpointError says what the token endpoint answered: the provider's
// error code and description, never a secret or token.
func (s *Source) endpointError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("oauth2: %s: token endpoint %s: %w", s.name, s.host, err)
	}
	reason := providerReason(re)
	if re.ErrorCode == "invalid_grant" && s.c.Delegated() {
		return fmt.Errorf("oauth2: %s: token endpoint %s: the refresh token was refused (%s): sign in again with gatehouse fetch oauth2-login %s",
			s.name, s.host, reason, s.account())
	}
	return fmt.Errorf("oauth2: %s: token endpoint %s: %s", s.name, s.host, reason)
}

// providerReason is a RetrieveError's code and description, or its HTTP
// status when it has no code, cut to maxProviderText bytes.
func providerReason(re *oauth2.RetrieveError) string {
	reason := re.ErrorCode
	if re.ErrorDescription != "" {
		reason += ": " + re.ErrorDescription
	}
	if reason == "" && re.Response != nil {
		reason = "HTTP " + re.Response.Status
	}
	return truncate(printable(reason), maxProviderText)
}
