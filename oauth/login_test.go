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

// A fetch that failed is not repeated by every session that asks within
// retryAfter: one request, one error, until then.
func TestFailedFetchIsNotRepeatedAtOnce(t *testing.T) {
	e := newEndpoint(t, func(map[string]string) (int, string) {
		return 401, `{"error":"invalid_client","error_description":"bad secret"}`
	})
	s, clk := newSource(t, e, "connector:m365", &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, t.TempDir(), "s", "x")})
	for range 5 {
		if _, err := s.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Fatalf("want the provider's error, got %v", err)
		}
	}
	if e.count() != 1 {
		t.Fatalf("%d requests for 5 calls within a minute, want 1", e.count())
	}
	clk.add(retryAfter)
	s.Token(context.Background())
	if e.count() != 2 {
		t.Fatalf("%d requests after retryAfter, want 2", e.count())
	}
}

func TestRotatedFilesAreOnePerAccount(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"fetch:müller", "fetch:möller", "fetch:sales+eu", "fetch:sales@eu", "fetch:a_b", "fetch:a:b", "connector:x", "fetch:..", "fetch:_2e"} {
		f := (&Source{name: name, dir: "/d"}).rotatedFile()
		if other, dup := seen[f]; dup {
			t.Errorf("%q and %q share %s", name, other, f)
		}
		if strings.Count(f, "/") != 2 || strings.Contains(f, "/..") {
			t.Errorf("%q: file %s leaves the directory", name, f)
		}
		seen[f] = name
	}
}
