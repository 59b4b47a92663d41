package oauth

import (
	"fmt"
	"strings"

	"gatehouse/safeio"
)

// WriteToken writes a refresh token to file, mode 0600, atomically: a
// reader sees the old token or the new one, and once WriteToken returns nil
// the new one survives a power cut (safeio: temporary file, fsync, rename,
// fsync of the directory).
func WriteToken(file, token string) error {
	token = strings.TrimSpace(token)
	if token == "" {
		return fmt.Errorf("oauth2: write refresh token %s: the token is empty", file)
	}
	if err := safeio.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("oauth2: write refresh token: %w", err)
	}
	return nil
}
