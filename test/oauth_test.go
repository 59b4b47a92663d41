//go:build e2e

package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/status"
	"gatehouse/test/tokenserver"
)

// TestOAuth2 runs the collector and a smart-host connector against mail
// servers that take only tokens (Dovecot's oauth2 passdb, and Postfix
// asking that Dovecot), with tokens from a local authorization server: the
// client-credentials grant with a secret and with a certificate, a device
// login, an access token the server expired early, and a revoked refresh
// token that fails only its own account.
func TestOAuth2(t *testing.T) {
	w := newMailWorld(t)
	ts := tokenserver.New()
	appCert := w.issue("gatehouse-app") // key and certificate in one PEM file
	certPEM, err := os.ReadFile(appCert)
	if err != nil {
		t.Fatal(err)
	}
	ts.AddClient("app-secret", "s3cret", nil, "alice@example.test")
	ts.AddClient("app-cert", "", certPEM, "bob@example.test")
	ts.AddClient("public-app", "", nil, "carol@example.test")
	ts.AddClient("old-app", "", nil, "dave@example.test")
	ts.AddClient("relay-app", "r3lay", nil, "relay@example.test")
	revoked := ts.IssueRefreshToken("old-app", "dave@example.test")
	ts.Revoke(revoked)
	intlURL := ts.Serve(t, w.intl, "10.88.0.1:443", w.issue("10.88.0.1"))
	smartURL := ts.Serve(t, w.smart, "10.99.0.1:443", w.issue("10.99.0.1"))
	homes := w.dovecotOAuth(t, intlURL+"/introspect", "alice@example.test", "bob@example.test", "carol@example.test", "dave@example.test")
	smartSink := w.smarthostOAuth(t, smartURL+"/introspect")
	intlSink := w.sink(t, w.intl, "10.88.0.1:25")
	seed(t, homes, "alice@example.test", "oa", 3)
	seed(t, homes, "bob@example.test", "ob", 3)
	seed(t, homes, "carol@example.test", "oc", 2)
	seed(t, homes, "dave@example.test", "od", 1)
	secret := writeSecret(t, w.dir, "app.secret", "s3cret")
	relaySecret := writeSecret(t, w.dir, "relay.secret", "r3lay")
	oldToken := writeSecret(t, w.dir, "dave.token", revoked)

	w.gatehouse(t, fmt.Sprintf(`
hostname: gw
dns: {servers: [10.77.0.1]}
smtp:
  hostname: mx.example.test
  tls: {ca_file: %[2]s}
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: none}
  trusted_networks: [10.88.0.0/24]
  connectors:
    - name: m365
      smarthost: "[smarthost.test]:587"
      tls: verify
      auth:
        user: relay@example.test
        oauth2: {token_url: "https://10.99.0.1/token", client_id: relay-app, client_secret_file: %[4]s, ca_file: %[2]s}
  transport:
    - {domain: office.test, connector: m365}
fetch:
  - name: app
    protocol: imaps
    server: 10.88.0.1
    user: alice@example.test
    oauth2: {token_url: "https://10.88.0.1/token", client_id: app-secret, client_secret_file: %[3]s, ca_file: %[2]s}
    deliver_to: alice@example.test
    ca_file: %[2]s
    poll: 1h
  - name: cert
    protocol: pop3s
    server: 10.88.0.1
    user: bob@example.test
    oauth2: {token_url: "https://10.88.0.1/token", client_id: app-cert, client_certificate: %[1]s, client_key: %[1]s, ca_file: %[2]s}
    deliver_to: bob@example.test
    ca_file: %[2]s
    poll: 1h
  - name: user
    protocol: imaps
    server: 10.88.0.1
    user: carol@example.test
    oauth2: {token_url: "https://10.88.0.1/token", device_url: "https://10.88.0.1/devicecode", client_id: public-app, delegated: true, ca_file: %[2]s}
    deliver_to: carol@example.test
    ca_file: %[2]s
    poll: 1h
  - name: old
    protocol: imaps
    server: 10.88.0.1
    user: dave@example.test
    oauth2: {token_url: "https://10.88.0.1/token", client_id: old-app, refresh_token_file: %[5]s, ca_file: %[2]s}
    deliver_to: dave@example.test
    ca_file: %[2]s
    poll: 1h
`, appCert, w.ca, secret, relaySecret, oldToken))

	collected := func(t *testing.T, re string, n int) {
		t.Helper()
		r := regexp.MustCompile(re)
		poll(t, fmt.Sprintf("%d messages matching %s collected", n, re), 60*time.Second, func() (bool, string) {
			got := len(countIDs(intlSink, r))
			return got >= n, fmt.Sprintf("%d collected; %+v", got, fetchStatus(t, w))
		})
	}

	t.Run("client credentials with a secret (IMAP) and a certificate (POP3)", func(t *testing.T) {
		collected(t, `<oa-\d+@test>`, 3)
		collected(t, `<ob-\d+@test>`, 3)
		if n := ts.Grants(tokenserver.ClientCredentials); n < 2 {
			t.Errorf("%d client-credentials grants, want one per account", n)
		}
	})

	t.Run("a revoked refresh token fails only its account, saying what to do", func(t *testing.T) {
		poll(t, "the account old to fail", 30*time.Second, func() (bool, string) {
			st := fetchStatus(t, w)
			for _, a := range st {
				if a.Name == "old" && strings.Contains(a.LastError, "invalid_grant") && strings.Contains(a.LastError, "sign in again") {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%+v", st)
		})
		for _, a := range fetchStatus(t, w) {
			if (a.Name == "app" || a.Name == "cert") && a.LastError != "" {
				t.Errorf("account %s fails too: %s", a.Name, a.LastError)
			}
		}
		if mailboxCount(homes, "dave@example.test") != 1 {
			t.Error("dave's mailbox was touched")
		}
	})

	t.Run("device login", func(t *testing.T) {
		cmd := exec.Command(gatehouseBinary(t), "fetch", "oauth2-login", "user", "--state", w.state())
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		r := bufio.NewReader(out)
		var transcript strings.Builder
		code := ""
		for code == "" {
			l, err := r.ReadString('\n')
			transcript.WriteString(l)
			if err != nil {
				t.Fatalf("oauth2-login printed no code: %v\n%s", err, transcript.String())
			}
			if m := regexp.MustCompile(`enter the code (\S+)`).FindStringSubmatch(l); m != nil {
				code = m[1]
			}
		}
		// The person at the provider's page approves.
		if !ts.Approve(code) {
			t.Fatalf("the token server does not know the code %q:\n%s", code, transcript.String())
		}
		rest, _ := bufio.NewReader(r).ReadString(0)
		transcript.WriteString(rest)
		if err := cmd.Wait(); err != nil || !strings.Contains(transcript.String(), "signed in") {
			t.Fatalf("oauth2-login: %v\n%s", err, transcript.String())
		}
		if out, err := gatehouseCmd(t, w.netWorld, "fetch", "now", "user"); err != nil {
			t.Fatalf("fetch now user: %v: %s", err, out)
		}
		collected(t, `<oc-\d+@test>`, 2)
		if ts.Grants(tokenserver.DeviceCode) < 1 || ts.Grants(tokenserver.RefreshToken) < 1 {
			t.Errorf("grants: device %d, refresh %d", ts.Grants(tokenserver.DeviceCode), ts.Grants(tokenserver.RefreshToken))
		}
	})

	t.Run("a token the server expired early is replaced at once", func(t *testing.T) {
		before := ts.Grants(tokenserver.ClientCredentials)
		ts.ExpireAll()
		seed(t, homes, "alice@example.test", "oe", 2)
		if out, err := gatehouseCmd(t, w.netWorld, "fetch", "now", "app"); err != nil {
			t.Fatalf("fetch now app: %v: %s", err, out)
		}
		collected(t, `<oe-\d+@test>`, 2)
		if ts.Grants(tokenserver.ClientCredentials) <= before {
			t.Error("no new token was fetched")
		}
	})

	t.Run("a smart host that takes a token", func(t *testing.T) {
		mustSwaks(t, w.intl, "--server", "10.88.0.2:25", "--from", "alice@example.test", "--to", "someone@office.test", "--header", "Message-ID: <oauth-out@test>")
		waitDump(t, smartSink, 60*time.Second, "<oauth-out@test>")
	})

	t.Run("the token endpoints are paths", func(t *testing.T) {
		out, err := gatehouseCmd(t, w.netWorld, "paths", "--format", "json")
		if err != nil || !strings.Contains(out, "OAuth2 token endpoint") || !strings.Contains(out, "10.88.0.1") || !strings.Contains(out, "10.99.0.1") {
			t.Errorf("paths: %v\n%s", err, out)
		}
		// paths check reaches each endpoint with a TLS handshake.
		chk, _ := exec.Command("ip", "netns", "exec", w.appl, gatehouseBinary(t), "paths", "check", "--state", w.state(), "--timeout", "5s").CombinedOutput()
		for _, ep := range []string{"10.88.0.1:443", "10.99.0.1:443"} {
			if !regexp.MustCompile(`OAuth2 token endpoint\s+TCP 443\s+` + regexp.QuoteMeta(ep) + `\s+ok`).Match(chk) {
				t.Errorf("paths check does not reach %s:\n%s", ep, chk)
			}
		}
		st, _ := gatehouseCmd(t, w.netWorld, "fetch", "status")
		if !strings.Contains(st, "fetch:app") || !strings.Contains(st, "connector:m365") {
			t.Errorf("fetch status names no tokens:\n%s", st)
		}
	})
}

func fetchStatus(t *testing.T, w *mailWorld) []status.FetchAccount {
	t.Helper()
	out, err := gatehouseCmd(t, w.netWorld, "fetch", "status", "--format", "json")
	var st []status.FetchAccount
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		return nil
	}
	return st
}
