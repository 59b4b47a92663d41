package oauth

import "time"

// SetRefreshToken makes a refresh token that a device login brought
// (`gatehouse fetch oauth2-login`) the account's current one: it is
// written where rotated tokens go, so it is newer than any before it, and
// the access token cached from the old grant is dropped.
func (s *Source) SetRefreshToken(tok string) error {
	if err := WriteToken(s.rotatedFile(), tok); err != nil {
		return err
	}
	s.mu.Lock()
	s.token, s.renew, s.failErr, s.lastErr = "", time.Time{}, nil, ""
	s.gen++ // a fetch still running for the old grant keeps nothing
	s.mu.Unlock()
	return nil
}
