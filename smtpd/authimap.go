package smtpd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"gatehouse/config"
)

// imapLogin checks a login and password with the internal mail server's
// IMAP LOGIN (RFC 9051), always over TLS with a verified certificate:
// implicit (993) or STARTTLS (143). It says false for a refused login and
// returns an error when the server could not be asked. The whole check is
// bounded: a server that stalls costs a client one AUTH, not a session.
func imapLogin(ctx context.Context, a *config.AuthIMAP, roots *x509.CertPool, user, pass string) (bool, error) {
	if strings.ContainsAny(user+pass, "\r\n\x00") {
		return false, nil
	}
	host, _, err := net.SplitHostPort(a.Server)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", a.Server)
	if err != nil {
		return false, fmt.Errorf("auth_imap: %w", err)
	}
	defer raw.Close()
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	conn := fixedDeadline{raw}
	opts := &imapclient.Options{TLSConfig: &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}}
	var cl *imapclient.Client
	if a.TLS == config.IMAPImplicit {
		cl = imapclient.New(tls.Client(conn, opts.TLSConfig), opts)
	} else if cl, err = imapclient.NewStartTLS(conn, opts); err != nil {
		return false, fmt.Errorf("auth_imap: STARTTLS: %w", err)
	}
	defer cl.Close()
	err = cl.Login(user, pass).Wait()
	if err == nil {
		cl.Logout()
		return true, nil
	}
	var ie *imap.Error
	switch {
	case !errors.As(err, &ie):
		return false, fmt.Errorf("auth_imap: %w", err)
	case ie.Type == imap.StatusResponseTypeNo && (ie.Code == imap.ResponseCodeUnavailable || ie.Code == imap.ResponseCodeServerBug):
		return false, fmt.Errorf("auth_imap: the server cannot check logins now: %v", err)
	case ie.Type == imap.StatusResponseTypeNo:
		return false, nil
	}
	return false, fmt.Errorf("auth_imap: LOGIN answered %v", err)
}

// fixedDeadline keeps the deadline set on the connection for the whole
// check: go-imap sets its own per response, and lifts them after.
type fixedDeadline struct{ net.Conn }

func (fixedDeadline) SetDeadline(time.Time) error      { return nil }
func (fixedDeadline) SetReadDeadline(time.Time) error  { return nil }
func (fixedDeadline) SetWriteDeadline(time.Time) error { return nil }
