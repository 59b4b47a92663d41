package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"gatehouse/config"
	"gatehouse/oauth"
	"gatehouse/status"
)

// tokens keeps one OAuth2 token source per account ("fetch:NAME") and
// connector ("connector:NAME"): made on first use, kept across polls and
// sessions (a token is fetched once for all of them), made anew when the
// account's settings change. It also runs the device logins of
// `gatehouse fetch oauth2-login`, whose refresh token it stores for the
// account's source.
type tokens struct {
	dir string // the relay's own: rotated refresh tokens
	log *slog.Logger

	mu     sync.Mutex
	src    map[string]*tokenSource
	logins map[string]*status.OAuthLogin
}

type tokenSource struct {
	cfg config.OAuth2
	*oauth.Source
}

func newTokens(dir string, log *slog.Logger) *tokens {
	return &tokens{dir: dir, log: log.With("part", "oauth2"), src: map[string]*tokenSource{}, logins: map[string]*status.OAuthLogin{}}
}

// source returns the account's token source.
func (t *tokens) source(name string, c *config.OAuth2) *tokenSource {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.src[name]; e != nil && reflect.DeepEqual(e.cfg, *c) {
		return e
	}
	e := &tokenSource{cfg: *c, Source: oauth.New(name, c, t.dir, readConfigured, nil)}
	t.src[name] = e
	return e
}

// prune forgets the sources and logins of accounts and connectors that no
// longer log in with OAuth2: the status lists only what the config has.
func (t *tokens) prune(full *config.Config) {
	keep := map[string]bool{}
	for _, a := range full.Fetch {
		if a.OAuth2 != nil {
			keep["fetch:"+a.Name] = true
		}
	}
	if full.SMTP != nil {
		for _, c := range full.SMTP.Connectors {
			if c.Auth != nil && c.Auth.OAuth2 != nil {
				keep["connector:"+c.Name] = true
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for name := range t.src {
		if !keep[name] {
			delete(t.src, name)
		}
	}
	for name := range t.logins {
		if !keep[name] {
			delete(t.logins, name)
		}
	}
}

// status lists the tokens for the relay's status.
func (t *tokens) status() []status.OAuthToken {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []status.OAuthToken
	for name, e := range t.src {
		st := e.Status()
		out = append(out, status.OAuthToken{Account: name, Fetched: st.Fetched, Expires: st.Expires, LastError: st.LastError})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// loginAccount finds the OAuth2 settings an oauth2-login names: a
// collector account, or "connector:NAME". Only delegated access signs in.
func (s *Service) loginAccount(id string) (string, *config.OAuth2, error) {
	var c *config.OAuth2
	name := "fetch:" + id
	if cn, ok := strings.CutPrefix(id, "connector:"); ok {
		name = id
		for _, k := range s.config().Connectors {
			if k.Name == cn && k.Auth != nil {
				c = k.Auth.OAuth2
			}
		}
	} else {
		for _, a := range s.fetch.Accounts() {
			if a.Name == id {
				c = a.OAuth2
			}
		}
	}
	switch {
	case c == nil:
		return "", nil, fmt.Errorf("%s: no such account with oauth2 (a collector account's name, or connector:NAME)", id)
	case !c.Delegated():
		return "", nil, fmt.Errorf("%s: signs in as the application (client credentials): nobody needs to sign in; set delegated: true for a user's mailbox", id)
	case c.DeviceURL == "":
		return "", nil, fmt.Errorf("%s: no device_url for the provider's device login", id)
	}
	return name, c, nil
}

// loginWait bounds how long the start of a device login waits for the
// provider's code: less than the control socket's deadline (30 s), so the
// CLI hears why.
const loginWait = 20 * time.Second

// startLogin starts a device login (RFC 8628) for the account and returns
// where the user signs in; the relay polls the provider on its own and
// stores the refresh token when the user has approved. A login already
// pending for the account is returned as it is.
func (t *tokens) startLogin(name string, c *config.OAuth2, err error) (*status.OAuthLogin, error) {
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	switch l := t.logins[name]; {
	case l != nil && l.State == "pending":
		cp := *l
		t.mu.Unlock()
		return &cp, nil
	case l != nil && l.State == "starting":
		t.mu.Unlock()
		return nil, fmt.Errorf("%s: a device login is starting; ask again in a moment", name)
	}
	t.logins[name] = &status.OAuthLogin{Account: name, State: "starting"}
	t.mu.Unlock()
	// A start that fails leaves no "starting" entry behind.
	defer func() {
		t.mu.Lock()
		if l := t.logins[name]; l != nil && l.State == "starting" {
			delete(t.logins, name)
		}
		t.mu.Unlock()
	}()
	client, err := oauth.NewClient(c, readConfigured)
	if err != nil {
		return nil, err
	}
	shown := make(chan status.OAuthLogin, 1)
	failed := make(chan error, 1)
	go func() {
		// The provider's code lives 15 minutes at most (Microsoft's,
		// Google's); the bound is for a provider that says otherwise.
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		var started bool
		rt, err := oauth.DeviceLogin(ctx, c, client, func(uri, complete, code string, expires time.Duration) {
			l := status.OAuthLogin{Account: name, VerificationURI: uri, CompleteURI: complete, UserCode: code, ExpiresIn: expires, State: "pending"}
			t.mu.Lock()
			t.logins[name] = &l
			t.mu.Unlock()
			started = true
			shown <- l
		})
		if err == nil {
			err = t.source(name, c).SetRefreshToken(rt)
		}
		if !started {
			failed <- err
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		l := t.logins[name]
		if err != nil {
			l.State, l.Error = "failed", err.Error()
			t.log.Error("device login failed", "account", name, "err", err)
			return
		}
		l.State = "done"
		t.log.Info("device login done: refresh token stored", "account", name)
	}()
	select {
	case l := <-shown:
		t.log.Info("device login started", "account", name, "verification_uri", l.VerificationURI)
		return &l, nil
	case err := <-failed:
		if err == nil {
			err = errors.New("the provider gave no code")
		}
		return nil, err
	case <-time.After(loginWait):
		return nil, fmt.Errorf("%s: the provider's device endpoint did not answer within %v", name, loginWait)
	}
}

// loginState says how the account's device login goes.
func (t *tokens) loginState(id string) (*status.OAuthLogin, error) {
	name := id
	if !strings.HasPrefix(id, "connector:") {
		name = "fetch:" + id
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.logins[name]
	if l == nil {
		return nil, fmt.Errorf("%s: no device login was started", id)
	}
	cp := *l
	return &cp, nil
}
