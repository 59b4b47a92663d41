package collector

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"gatehouse/collector/pop3"
	"gatehouse/config"
	"gatehouse/oauth"
)

// TokenSource gives an account's OAuth2 access token (oauth.Source).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	// Invalidate drops a token the server refused, if it is still the
	// current one, so the next login fetches a new one.
	Invalidate(token string)
}

// credentials is what an account logs in with: a password, or a token.
type credentials struct {
	password string
	token    TokenSource
	oauth    *config.OAuth2
}

// credentials reads the account's password file, or finds its token
// source (made once per account and kept across polls).
func (c *Collector) credentials(cfg config.FetchAccount) (credentials, error) {
	if cfg.OAuth2 != nil {
		if c.tokens == nil {
			return credentials{}, fmt.Errorf("oauth2: no token service")
		}
		return credentials{token: c.tokens("fetch:"+cfg.Name, cfg.OAuth2), oauth: cfg.OAuth2}, nil
	}
	pw, err := c.read(cfg.PasswordFile)
	if err != nil {
		return credentials{}, fmt.Errorf("password file: %w", err)
	}
	return credentials{password: strings.TrimRight(string(pw), "\r\n")}, nil
}

// tokenSASL is a SASL client for a mechanism that completes with its
// initial response (XOAUTH2, OAUTHBEARER); an error challenge is kept for
// the log and answered with the mechanism's abort.
type tokenSASL struct {
	mech      string
	ir, abort []byte
	challenge []byte
}

func (s *tokenSASL) Start() (string, []byte, error) { return s.mech, s.ir, nil }

func (s *tokenSASL) Next(challenge []byte) ([]byte, error) {
	if s.challenge != nil {
		return nil, fmt.Errorf("%s: a second challenge", s.mech)
	}
	s.challenge = append([]byte{}, challenge...)
	return s.abort, nil
}

// refused is a login the server turned down, with what it said of the
// token (RFC 7628 3.2.2) when it did.
func refused(mech string, err error, challenge []byte) error {
	if len(challenge) > 0 {
		return fmt.Errorf("AUTHENTICATE %s refused (%s): %w", mech, oauth.FailureReason(challenge), err)
	}
	return fmt.Errorf("AUTHENTICATE %s refused: %w", mech, err)
}

// withToken logs in with the account's token by login; a token the
// server refused (revoked, or expired before its time) is dropped and a
// new one tried once, so that such a token costs no poll. Any other
// failure (the connection) keeps the token.
func withToken(ctx context.Context, src TokenSource, login func(tok string) error) error {
	var err error
	for range 2 {
		var tok string
		if tok, err = src.Token(ctx); err != nil {
			return err
		}
		if err = login(tok); err == nil {
			return nil
		}
		var ie *imap.Error
		var pe *pop3.Error
		if !errors.As(err, &ie) && !errors.As(err, &pe) {
			return err
		}
		src.Invalidate(tok)
	}
	return err
}

// loginIMAP logs in with the password, or with the token by the
// mechanism the server offers.
func loginIMAP(ctx context.Context, cl *imapclient.Client, cfg config.FetchAccount, cr credentials) error {
	if cr.token == nil {
		return cl.Login(cfg.User, cr.password).Wait()
	}
	caps := cl.Caps()
	mech := oauth.Mechanism(cr.oauth.Mechanism, func(m string) bool { return caps.Has(imap.AuthCap(m)) })
	return withToken(ctx, cr.token, func(tok string) error {
		ir, abort := oauth.Initial(mech, cfg.User, cfg.Server, cfg.Port, tok)
		s := &tokenSASL{mech: mech, ir: ir, abort: abort}
		if err := cl.Authenticate(s); err != nil {
			return refused(mech, err, s.challenge)
		}
		return nil
	})
}

// loginPOP3 is loginIMAP for POP3 (RFC 5034).
func loginPOP3(ctx context.Context, cl *pop3.Client, cfg config.FetchAccount, cr credentials) error {
	if cr.token == nil {
		return cl.Login(cfg.User, cr.password)
	}
	offered := cl.Mechanisms()
	mech := oauth.Mechanism(cr.oauth.Mechanism, func(m string) bool {
		for _, o := range offered {
			if o == m {
				return true
			}
		}
		return false
	})
	return withToken(ctx, cr.token, func(tok string) error {
		ir, abort := oauth.Initial(mech, cfg.User, cfg.Server, cfg.Port, tok)
		if challenge, err := cl.Authenticate(mech, ir, abort); err != nil {
			return refused(mech, err, challenge)
		}
		return nil
	})
}
