package oauth

import (
	"context"
	"strings"
	"testing"

	"gatehouse/config"
)

// A delegated account without a refresh_token_file has nothing until a
// device login stores its token; from then on that token is used.
func TestDelegatedWithoutFileUsesTheStoredLogin(t *testing.T) {
	e := newEndpoint(t, func(f map[string]string) (int, string) {
		if f["grant_type"] == "refresh_token" && f["refresh_token"] == "RT-LOGIN" {
			return 200, `{"access_token":"AT-LOGIN","expires_in":3600}`
		}
		return 400, `{"error":"invalid_grant"}`
	})
	s, _ := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", DelegatedAccess: true})
	if _, err := s.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "sign in with gatehouse fetch oauth2-login o365") {
		t.Fatalf("before the login: %v", err)
	}
	if e.count() != 0 {
		t.Errorf("%d requests without a refresh token", e.count())
	}
	if err := s.SetRefreshToken("RT-LOGIN"); err != nil {
		t.Fatal(err)
	}
	if got := token(t, s); got != "AT-LOGIN" {
		t.Fatalf("after the login: %q", got)
	}
}
