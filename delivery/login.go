package delivery

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"gatehouse/oauth"
)

// TokenSource gives a connector's OAuth2 access token (oauth.Source).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	// Invalidate drops a token the server refused, if it is still the
	// current one, so the next session fetches a new one.
	Invalidate(token string)
}

// login authenticates to a smart host: with the password of the
// connector's password_file, or with its OAuth2 token (XOAUTH2 or
// OAUTHBEARER, as Exchange Online's SMTP AUTH takes it).
func (t *Transport) login(ctx context.Context, c *smtpConn, tg target, h hop) error {
	a := tg.auth
	if a.OAuth2 == nil {
		read := t.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		pw, err := read(a.PasswordFile)
		if err != nil {
			return fmt.Errorf("smart host password: %w", err)
		}
		return c.auth(a.User, strings.TrimRight(string(pw), "\r\n"))
	}
	if t.Tokens == nil {
		return fmt.Errorf("oauth2: no token service")
	}
	name := "connector:" + tg.connector
	src := t.Tokens(name, a.OAuth2)
	offered := " " + strings.ToUpper(c.ext["AUTH"]) + " "
	mech := oauth.Mechanism(a.OAuth2.Mechanism, func(m string) bool { return strings.Contains(offered, " "+m+" ") })
	_, p, _ := net.SplitHostPort(h.addr)
	port, _ := strconv.Atoi(p)
	// A refused token (revoked, or expired before its time) is dropped
	// and a new one tried once: it costs no delivery attempt.
	for try := 0; ; try++ {
		tok, err := src.Token(ctx)
		if err != nil {
			// The provider's words stay here and in the status: a DSN
			// would carry them to whoever sent the mail.
			t.Log.Warn("no access token for the smart host", "connector", tg.connector, "err", err)
			return fmt.Errorf("no access token for %s (gatehouse fetch status says why)", name)
		}
		ir, abort := oauth.Initial(mech, a.User, tg.matchName, port, tok)
		err = c.authToken(mech, ir, abort)
		if err == nil {
			return nil
		}
		// 535 is a refused credential (RFC 4954 6): the token. Other
		// replies (AUTH turned off for the tenant, 454) and a broken
		// connection say nothing against it.
		var re *ReplyError
		if !errors.As(err, &re) || re.Code != 535 {
			return err
		}
		src.Invalidate(tok)
		if try == 1 {
			return err
		}
	}
}

// authToken runs AUTH with a mechanism that completes with its initial
// response (RFC 4954 4: the line may be 12288 octets, room for a token).
// A refusal comes as a 334 challenge with the server's reason first (RFC
// 7628 3.2.2), answered with abort; the reason goes into the error.
func (c *smtpConn) authToken(mech string, ir, abort []byte) error {
	text, err := c.cmd(235, "AUTH %s %s", mech, base64.StdEncoding.EncodeToString(ir))
	if err == nil {
		return nil
	}
	re, ok := err.(*ReplyError)
	if !ok || re.Code != 334 {
		return err
	}
	challenge, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	_, err = c.cmd(235, "%s", base64.StdEncoding.EncodeToString(abort))
	if err == nil {
		return fmt.Errorf("AUTH %s: the server took the abort as a login (%s)", mech, text)
	}
	return fmt.Errorf("AUTH %s refused (%s): %w", mech, oauth.FailureReason(challenge), err)
}
