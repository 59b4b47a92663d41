package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// OAuth2 is how a collector account or a smart-host connector gets the
// access token it logs in with (SASL XOAUTH2 or OAUTHBEARER) instead of a
// password: Exchange Online and Gmail no longer take passwords.
//
// Two grants: delegated access (the refresh-token grant: a user signed
// in once, with `gatehouse fetch oauth2-login`, or gave a refresh token
// in RefreshTokenFile; Gmail, or one Microsoft user's mailbox), or
// app-only access (the client-credentials grant, Microsoft's, with a
// client secret or a certificate).
type OAuth2 struct {
	// Provider fills in the endpoints and scopes: microsoft | google; ""
	// means every endpoint is given.
	Provider string `yaml:"provider"`
	// Tenant is Microsoft's directory: its id or a domain of it.
	Tenant   string `yaml:"tenant"`
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret (never this file); or
	// ClientCertificate and ClientKey (PEM) sign a client assertion
	// (RFC 7523), which Microsoft prefers for app-only access.
	ClientSecretFile  string `yaml:"client_secret_file"`
	ClientCertificate string `yaml:"client_certificate"`
	ClientKey         string `yaml:"client_key"`
	// DelegatedAccess: the account signs in as a user (`gatehouse fetch
	// oauth2-login` stores the refresh token in the relay's state).
	DelegatedAccess bool `yaml:"delegated"`
	// RefreshTokenFile optionally holds a refresh token obtained
	// elsewhere (implies delegated); the relay keeps the rotated tokens
	// it is given in its own state, and goes back to this file only when
	// its content changes (a new sign-in).
	RefreshTokenFile string `yaml:"refresh_token_file"`
	// TokenURL and DeviceURL (RFC 8628, for oauth2-login): defaults from
	// the provider.
	TokenURL  string   `yaml:"token_url"`
	DeviceURL string   `yaml:"device_url"`
	Scopes    []string `yaml:"scopes"` // default from the provider and the grant
	// Mechanism is the SASL mechanism: xoauth2 | oauthbearer; default:
	// OAUTHBEARER when the server offers it, else XOAUTH2.
	Mechanism string `yaml:"mechanism"`
	// CAFile: extra CA for the token endpoint's certificate (besides the
	// system roots).
	CAFile string `yaml:"ca_file"`
}

// Delegated says whether the account uses the refresh-token grant.
func (o *OAuth2) Delegated() bool { return o.DelegatedAccess || o.RefreshTokenFile != "" }

// The providers' endpoints. Microsoft's app-only scope is the resource's
// .default (what the app registration was granted); delegated access names
// the protocols, and offline_access brings the refresh token.
const (
	microsoftLogin = "https://login.microsoftonline.com/"
	googleToken    = "https://oauth2.googleapis.com/token"
)

func (o *OAuth2) defaults() {
	switch o.Provider {
	case "microsoft":
		base := microsoftLogin + url.PathEscape(o.Tenant) + "/oauth2/v2.0/"
		if o.TokenURL == "" {
			o.TokenURL = base + "token"
		}
		if o.DeviceURL == "" {
			o.DeviceURL = base + "devicecode"
		}
		if len(o.Scopes) == 0 {
			if o.Delegated() {
				o.Scopes = []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/POP.AccessAsUser.All",
					"https://outlook.office.com/SMTP.Send", "offline_access"}
			} else {
				o.Scopes = []string{"https://outlook.office365.com/.default"}
			}
		}
	case "google":
		// No device login: Google's device flow does not grant the
		// Gmail scope; the refresh token comes from a desktop sign-in.
		if o.TokenURL == "" {
			o.TokenURL = googleToken
		}
		if len(o.Scopes) == 0 {
			o.Scopes = []string{"https://mail.google.com/"}
		}
	}
}

// TokenHost is the token endpoint's host and port, for the path table.
func (o *OAuth2) TokenHost() (string, uint16) {
	u, err := url.Parse(o.TokenURL)
	if err != nil {
		return "", 0
	}
	return u.Hostname(), 443
}

// EndpointHosts are the hosts the account reaches on 443: the token
// endpoint's, and for a delegated account the device login's.
func (o *OAuth2) EndpointHosts() []string {
	var hosts []string
	for _, v := range []string{o.TokenURL, o.DeviceURL} {
		if v == o.DeviceURL && !o.Delegated() {
			continue
		}
		if u, err := url.Parse(v); err == nil && u.Hostname() != "" && !slices.Contains(hosts, u.Hostname()) {
			hosts = append(hosts, u.Hostname())
		}
	}
	return hosts
}

func (o *OAuth2) check(ck *checker, p string) {
	switch o.Provider {
	case "", "microsoft", "google":
	default:
		ck.errf(p+".provider", "%q: microsoft, google, or leave it out and give token_url", o.Provider)
	}
	if o.Provider == "microsoft" && o.Tenant == "" {
		ck.errf(p+".tenant", "Microsoft needs the tenant (its id, or a domain such as contoso.onmicrosoft.com)")
	}
	if o.Provider == "google" && o.RefreshTokenFile == "" {
		ck.errf(p+".refresh_token_file", "Gmail gives mailbox access only to a user, and Google's device login does not grant the Gmail scope: give the refresh token of a desktop sign-in (see the README)")
	}
	if o.ClientID == "" {
		ck.errf(p+".client_id", "the application (client) id is required")
	}
	for key, v := range map[string]string{"token_url": o.TokenURL, "device_url": o.DeviceURL} {
		if v == "" && key == "device_url" {
			continue
		}
		u, err := url.Parse(v)
		switch {
		case v == "":
			ck.errf(p+"."+key, "give the provider (microsoft, google) or the token endpoint's URL")
		case err != nil || u.Scheme != "https" || u.Host == "" || !validHost(u.Hostname()):
			ck.errf(p+"."+key, "%q is not an https URL (tokens never cross the network in clear)", v)
		case u.Port() != "" && u.Port() != "443":
			ck.errf(p+"."+key, "%q: the token endpoint is reached on port 443", v)
		}
	}
	cert, key := o.ClientCertificate != "", o.ClientKey != ""
	switch {
	case cert != key:
		ck.errf(p+".client_certificate", "give both client_certificate and client_key, or neither")
	case cert && o.ClientSecretFile != "":
		ck.errf(p+".client_secret_file", "give a client secret or a certificate, not both")
	case !cert && o.ClientSecretFile == "" && !o.Delegated():
		ck.errf(p, "app-only access (not delegated) needs client_secret_file, or client_certificate and client_key")
	case cert && o.Delegated():
		ck.errf(p+".client_certificate", "a delegated account signs in as a public client or with a client secret: the device login takes no certificate")
	case cert && o.Provider == "google":
		ck.errf(p+".client_certificate", "Google's token endpoint takes a client secret")
	}
	switch o.Mechanism {
	case "", "xoauth2", "oauthbearer":
	default:
		ck.errf(p+".mechanism", "%q: xoauth2 or oauthbearer", o.Mechanism)
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			ck.errf(fmt.Sprintf("%s.scopes[%d]", p, i), "%q is not a scope", s)
		}
	}
}
