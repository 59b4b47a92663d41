package oauth

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/config"
)

// deviceEndpoint is a fake provider: /device answers the device
// authorization request, /token gives the polls' answers in turn.
func deviceEndpoint(t *testing.T, polls ...string) (*endpoint, *config.OAuth2) {
	var mu sync.Mutex
	e := newEndpoint(t, func(f map[string]string) (int, string) {
		if f["path"] == "/device" {
			if f["client_id"] != "app" || f["scope"] != "https://mail.google.com/" {
				return 400, `{"error":"invalid_request"}`
			}
			return 200, `{"device_code":"DC","user_code":"WDJB-MJHT","verification_uri":"https://example.com/device",
				"verification_uri_complete":"https://example.com/device?user_code=WDJB-MJHT","expires_in":900,"interval":2}`
		}
		if f["grant_type"] != "urn:ietf:params:oauth:grant-type:device_code" || f["device_code"] != "DC" || f["client_id"] != "app" || f["client_secret"] != "gs" {
			return 400, `{"error":"invalid_request"}`
		}
		mu.Lock()
		defer mu.Unlock()
		p := polls[0]
		polls = polls[1:]
		if strings.Contains(p, `"error"`) {
			return 400, p
		}
		return 200, p
	})
	return e, &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, t.TempDir(), "secret", "gs\n"),
		TokenURL: e.srv.URL + "/token", DeviceURL: e.srv.URL + "/device", Scopes: []string{"https://mail.google.com/"}}
}

// login runs deviceLogin with waits recorded instead of slept.
func login(t *testing.T, e *endpoint, c *config.OAuth2) (rt string, err error, shown []string, waits []time.Duration) {
	show := func(uri, complete, code string, valid time.Duration) {
		shown = append(shown, uri, complete, code, valid.Round(time.Minute).String())
	}
	wait := func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		return nil
	}
	rt, err = deviceLogin(t.Context(), c, e.srv.Client(), show, wait)
	return rt, err, shown, waits
}

func TestDeviceLogin(t *testing.T) {
	e, c := deviceEndpoint(t, `{"error":"authorization_pending"}`, `{"error":"slow_down"}`, `{"error":"authorization_pending"}`,
		`{"access_token":"AT","expires_in":3599,"refresh_token":"RT","token_type":"Bearer"}`)
	rt, err, shown, waits := login(t, e, c)
	if err != nil || rt != "RT" {
		t.Fatalf("refresh token %q, error %v", rt, err)
	}
	if want := "https://example.com/device|https://example.com/device?user_code=WDJB-MJHT|WDJB-MJHT|15m0s"; strings.Join(shown, "|") != want {
		t.Errorf("shown %q, want %q", strings.Join(shown, "|"), want)
	}
	want := []time.Duration{2 * time.Second, 2 * time.Second, 7 * time.Second, 7 * time.Second}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
}

func TestDeviceLoginEnds(t *testing.T) {
	for _, tc := range []struct{ answer, want string }{
		{`{"error":"access_denied"}`, "oauth2 login: the sign-in was denied"},
		{`{"error":"expired_token"}`, "oauth2 login: the code WDJB-MJHT expired before the sign-in was approved: run the login again"},
		{`{"error":"invalid_client","error_description":"bad"}`, "oauth2 login: token endpoint 127.0.0.1: invalid_client: bad"},
		{`{"access_token":"AT"}`, "oauth2 login: the provider signed in but gave no refresh token"},
	} {
		e, c := deviceEndpoint(t, `{"error":"authorization_pending"}`, tc.answer)
		rt, err, _, _ := login(t, e, c)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || rt != "" {
			t.Errorf("answer %s: %q, %v; want error %q", tc.answer, rt, err, tc.want)
		}
	}
}

func TestDeviceLoginContext(t *testing.T) {
	e, c := deviceEndpoint(t)
	ctx, cancel := context.WithCancel(t.Context())
	show := func(string, string, string, time.Duration) { cancel() }
	_, err := deviceLogin(ctx, c, e.srv.Client(), show, sleep)
	if err == nil || !strings.Contains(err.Error(), "waiting for the sign-in: context canceled") {
		t.Fatalf("error %v", err)
	}
}
