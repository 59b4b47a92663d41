package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"gatehouse/config"
)

// imapLogin checks a login and password with the internal mail server's
// IMAP LOGIN (RFC 9051), always over TLS with a verified certificate. It
// says false for a refused login and returns an error when the server
// could not be asked.
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
	tc := &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}
	var conn net.Conn = raw
	if a.TLS == "implicit" {
		conn = tls.Client(raw, tc)
	}
	r := bufio.NewReader(conn)
	// line reads one response line; tagged says whether it is the end of
	// the command with that tag, and how it ended.
	wait := func(tag string) (string, error) {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(l) > 8192 {
				return "", errors.New("response line too long")
			}
			if tag == "" || strings.HasPrefix(l, tag+" ") {
				return strings.TrimSpace(strings.TrimPrefix(l, tag+" ")), nil
			}
		}
	}
	if g, err := wait(""); err != nil || !strings.HasPrefix(g, "* OK") {
		return false, fmt.Errorf("auth_imap: greeting %q: %v", g, err)
	}
	if a.TLS == "starttls" {
		fmt.Fprint(conn, "s STARTTLS\r\n")
		if st, err := wait("s"); err != nil || !strings.HasPrefix(st, "OK") {
			return false, fmt.Errorf("auth_imap: STARTTLS refused: %q %v", st, err)
		}
		conn = tls.Client(raw, tc)
		r = bufio.NewReader(conn)
	}
	fmt.Fprintf(conn, "l LOGIN %s %s\r\n", imapQuote(user), imapQuote(pass))
	st, err := wait("l")
	if err != nil {
		return false, fmt.Errorf("auth_imap: %w", err)
	}
	fmt.Fprint(conn, "o LOGOUT\r\n")
	switch {
	case strings.HasPrefix(st, "OK"):
		return true, nil
	case strings.HasPrefix(st, "NO [UNAVAILABLE]") || strings.HasPrefix(st, "NO [SERVERBUG]"):
		return false, fmt.Errorf("auth_imap: the server cannot check logins now: %q", st)
	case strings.HasPrefix(st, "NO"):
		return false, nil
	}
	return false, fmt.Errorf("auth_imap: LOGIN answered %q", st)
}

// imapQuote writes s as an IMAP quoted string.
func imapQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
