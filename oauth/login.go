package oauth

import (
	"strings"
	"time"
)

// SetRefreshToken makes a refresh token that a device login brought
// (`gatehouse fetch oauth2-login`) the account's current one: it is
// written where rotated tokens go, so it is newer than any before it, and
// the access token cached from the old grant is dropped.
func (s *Source) SetRefreshToken(tok string) error {
	// Stored against the operator's file as it is now: that file wins
	// again only once its content changes.
	seed := ""
	if s.c.RefreshTokenFile != "" {
		if b, err := s.read(s.c.RefreshTokenFile); err == nil {
			seed = fingerprint(strings.TrimSpace(string(b)))
		}
	}
	if err := s.writeRotated(tok, seed); err != nil {
		return err
	}
	s.mu.Lock()
	s.token, s.renew, s.failErr, s.lastErr = "", time.Time{}, nil, ""
	s.gen++ // a fetch still running for the old grant keeps nothing
	s.mu.Unlock()
	return nil
}
