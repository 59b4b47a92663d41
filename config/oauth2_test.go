package config

import (
	"errors"
	"strings"
	"testing"
)

const oauthBase = "smtp: {hostname: mx.example.com}\nfetch:\n  - name: o365\n    protocol: imaps\n    server: outlook.office365.com\n    user: a@example.com\n    deliver_to: a@example.com\n"

func TestOAuth2Errors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"password and oauth2", "    password_file: /p\n    oauth2: {provider: microsoft, tenant: t, client_id: c, client_secret_file: /s}\n",
			[]string{"fetch[0].password_file: give a password file or oauth2, not both"}},
		{"unknown provider", "    oauth2: {provider: yahoo, client_id: c, client_secret_file: /s}\n",
			[]string{`fetch[0].oauth2.provider: "yahoo": microsoft, google, or leave it out and give token_url`, "fetch[0].oauth2.token_url: give the provider"}},
		{"microsoft without tenant", "    oauth2: {provider: microsoft, client_id: c, client_secret_file: /s}\n",
			[]string{"fetch[0].oauth2.tenant: Microsoft needs the tenant"}},
		{"token over http", "    oauth2: {token_url: \"http://login.example/token\", client_id: c, client_secret_file: /s}\n",
			[]string{`fetch[0].oauth2.token_url: "http://login.example/token" is not an https URL`}},
		{"app-only without a secret", "    oauth2: {provider: microsoft, tenant: t, client_id: c}\n",
			[]string{"fetch[0].oauth2: app-only access (not delegated) needs client_secret_file"}},
		{"secret and certificate", "    oauth2: {provider: microsoft, tenant: t, client_id: c, client_secret_file: /s, client_certificate: /c, client_key: /k}\n",
			[]string{"fetch[0].oauth2.client_secret_file: give a client secret or a certificate, not both"}},
		{"gmail without a refresh token", "    oauth2: {provider: google, delegated: true, client_id: c, client_secret_file: /s}\n",
			[]string{"fetch[0].oauth2.refresh_token_file: Gmail gives mailbox access only to a user"}},
		{"bad mechanism", "    oauth2: {provider: microsoft, tenant: t, client_id: c, client_secret_file: /s, mechanism: plain}\n",
			[]string{`fetch[0].oauth2.mechanism: "plain": xoauth2 or oauthbearer`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse("f.yaml", []byte(oauthBase+tc.yaml))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			all := strings.Join(got, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("errors:\n%s\nwant one containing %q", all, w)
				}
			}
			if len(got) > 0 && !strings.HasPrefix(got[0], "f.yaml:") {
				t.Errorf("error not placed: %s", got[0])
			}
		})
	}
}

func TestOAuth2Presets(t *testing.T) {
	c, _, err := Parse("f.yaml", []byte(oauthBase+"    oauth2: {provider: microsoft, tenant: contoso.onmicrosoft.com, client_id: c, client_secret_file: /s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Fetch[0].OAuth2
	if o.TokenURL != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" || strings.Join(o.Scopes, " ") != "https://outlook.office365.com/.default" || o.Delegated() {
		t.Errorf("microsoft app-only preset: %+v", o)
	}
	if h, port := o.TokenHost(); h != "login.microsoftonline.com" || port != 443 {
		t.Errorf("token host %s:%d", h, port)
	}
	c, _, err = Parse("f.yaml", []byte(oauthBase+"    oauth2: {provider: microsoft, tenant: t, client_id: c, delegated: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Fetch[0].OAuth2; !strings.Contains(strings.Join(o.Scopes, " "), "IMAP.AccessAsUser.All") || !strings.HasSuffix(o.DeviceURL, "/devicecode") {
		t.Errorf("microsoft delegated preset: %+v", o)
	}
}
