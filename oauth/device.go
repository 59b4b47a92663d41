package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"gatehouse/config"
)

// The device authorization grant's poll answers (RFC 8628 3.5).
const (
	deviceGrant  = "urn:ietf:params:oauth:grant-type:device_code"
	slowDownStep = 5 * time.Second
)

// DeviceLogin runs the device authorization grant (RFC 8628) at
// c.DeviceURL for `gatehouse fetch oauth2-login`: show is called once with
// the verification URI (and the complete one if given), the user code and
// how long it is valid; then DeviceLogin polls the token endpoint at the
// interval the provider asks (slow_down adds 5 s) until the user approves
// (it returns the refresh token), denies, the code expires, or ctx ends.
// The client secret, if c names one, is read with os.ReadFile: the relay
// runs the login, and PID 1 lets it read the files its config names.
// client nil: NewClient(c, os.ReadFile).
func DeviceLogin(ctx context.Context, c *config.OAuth2, client *http.Client,
	show func(verificationURI, verificationURIComplete, userCode string, expiresIn time.Duration)) (refreshToken string, err error) {
	return deviceLogin(ctx, c, client, show, sleep)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deviceLogin is DeviceLogin with the wait between polls given (tests do
// not sleep).
func deviceLogin(ctx context.Context, c *config.OAuth2, client *http.Client,
	show func(string, string, string, time.Duration), wait func(context.Context, time.Duration) error) (string, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("oauth2 login: "+format, a...)
	}
	if c.DeviceURL == "" {
		return "", fail("no device_url: the provider's device login endpoint is needed")
	}
	if client == nil {
		var err error
		if client, err = NewClient(c, os.ReadFile); err != nil {
			return "", fail("%w", err)
		}
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, limited(client))
	var secret string
	if c.ClientSecretFile != "" {
		b, err := os.ReadFile(c.ClientSecretFile)
		if err != nil {
			return "", fail("client secret: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	host := func(u string) string {
		if p, err := url.Parse(u); err == nil {
			return p.Hostname()
		}
		return ""
	}
	oc := oauth2.Config{ClientID: c.ClientID, Scopes: c.Scopes,
		Endpoint: oauth2.Endpoint{DeviceAuthURL: c.DeviceURL, TokenURL: c.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	da, err := oc.DeviceAuth(ctx)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return "", fail("device endpoint %s: %s", host(c.DeviceURL), providerReason(re))
		}
		return "", fail("device endpoint %s: %w", host(c.DeviceURL), err)
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return "", fail("device endpoint %s: the answer lacks device_code, user_code or verification_uri", host(c.DeviceURL))
	}
	var valid time.Duration
	if !da.Expiry.IsZero() {
		valid = time.Until(da.Expiry).Round(time.Second)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, da.Expiry)
		defer cancel()
	}
	show(da.VerificationURI, da.VerificationURIComplete, da.UserCode, valid)

	interval := time.Duration(da.Interval) * time.Second
	if da.Interval <= 0 || da.Interval > 3600 {
		interval = 5 * time.Second // RFC 8628 3.2: missing means 5
	}
	cc := clientcredentials.Config{ClientID: c.ClientID, ClientSecret: secret, TokenURL: c.TokenURL,
		AuthStyle:      oauth2.AuthStyleInParams,
		EndpointParams: url.Values{"grant_type": {deviceGrant}, "device_code": {da.DeviceCode}}}
	// ended says why the wait ended: the code expired, or the caller's ctx.
	ended := func(err error) error {
		if !da.Expiry.IsZero() && !time.Now().Before(da.Expiry) {
			return fail("the code %s expired before the sign-in was approved: run the login again", da.UserCode)
		}
		return fail("waiting for the sign-in: %w", err)
	}
	for {
		if err := wait(ctx, interval); err != nil {
			return "", ended(err)
		}
		tok, err := cc.Token(ctx)
		if err == nil {
			if tok.RefreshToken == "" {
				return "", fail("the provider signed in but gave no refresh token (for Microsoft, offline_access must be among the scopes)")
			}
			return tok.RefreshToken, nil
		}
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) {
			if ctx.Err() != nil {
				return "", ended(ctx.Err())
			}
			return "", fail("token endpoint %s: %w", host(c.TokenURL), err)
		}
		switch re.ErrorCode {
		case "authorization_pending":
		case "slow_down":
			interval += slowDownStep
		case "access_denied":
			return "", fail("the sign-in was denied")
		case "expired_token":
			return "", fail("the code %s expired before the sign-in was approved: run the login again", da.UserCode)
		default:
			return "", fail("token endpoint %s: %s", host(c.TokenURL), providerReason(re))
		}
	}
}
