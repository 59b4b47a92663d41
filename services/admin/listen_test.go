package admin

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"gatehouse/adminauth"
	"gatehouse/config"
	"gatehouse/layout"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// listening starts the service's listeners with allow as admin.allow.
func listening(t *testing.T, allow string) (web, api int, dir string) {
	t.Helper()
	web, api = freePort(t), freePort(t)
	cfg, _, err := config.Parse("f.yaml", fmt.Appendf(nil, "admin: {allow: [%s], web_port: %d, api_port: %d}\n", allow, web, api))
	if err != nil {
		t.Fatal(err)
	}
	p := layout.Host(t.TempDir())
	s, err := newServer(context.Background(), cfg, Options{Paths: p, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := s.listen(ctx, cfg, func(error) {}); err != nil {
		t.Fatal(err)
	}
	return web, api, p.Admin()
}

// A source the allow list does not name is cut off before TLS, by the
// service itself (the firewall aside); a listed one gets TLS 1.2 or later
// only.
func TestListenerGate(t *testing.T) {
	_, api, _ := listening(t, "192.0.2.0/24")
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", api), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Fatal("TLS with a source not on the allow list")
	}

	web, api, dir := listening(t, "127.0.0.1")
	for _, port := range []int{web, api} {
		if _, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
			t.Errorf("port %d: TLS 1.1 accepted", port)
		}
	}
	tok, err := adminauth.CreateToken(dir, "t", adminauth.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/api/v1/openapi.json", api), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("allowed source: %d, TLS %x", resp.StatusCode, resp.TLS.Version)
	}
}
