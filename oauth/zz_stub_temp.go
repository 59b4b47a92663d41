package oauth

// TEMPORARY stub of the o-core API, removed at its merge.

import (
	"context"
	"net/http"
	"time"

	"gatehouse/config"
)

type Source struct{}

type Status struct {
	Expires   time.Time `json:"expires,omitzero"`
	Fetched   time.Time `json:"fetched,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

func New(name string, c *config.OAuth2, dir string, read func(string) ([]byte, error), client *http.Client) *Source {
	return &Source{}
}
func (s *Source) Token(ctx context.Context) (string, error) { return "", nil }
func (s *Source) Invalidate()                               {}
func (s *Source) Status() Status                            { return Status{} }
func NewClient(c *config.OAuth2, read func(string) ([]byte, error)) (*http.Client, error) {
	return nil, nil
}
func DeviceLogin(ctx context.Context, c *config.OAuth2, client *http.Client,
	show func(verificationURI, verificationURIComplete, userCode string, expiresIn time.Duration)) (refreshToken string, err error) {
	return "", nil
}
func WriteToken(file, token string) error                          { return nil }
func XOAUTH2(user, token string) []byte                            { return nil }
func OAuthBearer(user, host string, port int, token string) []byte { return nil }
func FailureReason(challenge []byte) string                        { return "" }

func (s *Source) SetRefreshToken(tok string) error { return nil }
