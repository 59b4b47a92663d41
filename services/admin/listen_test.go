package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// A client certificate the configured CA signed lets an API client in
// with admin.client_role; one from another CA does not.
func TestClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t, "ops CA")
	other, otherKey := newCA(t, "other CA")
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o600)
	web, api := freePort(t), freePort(t)
	cfg, _, err := config.Parse("f.yaml", fmt.Appendf(nil, "admin: {allow: [127.0.0.1], web_port: %d, api_port: %d, client_ca: %s, client_role: read}\n", web, api, caFile))
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServer(context.Background(), cfg, Options{Paths: layout.Host(dir), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.listen(ctx, cfg, func(error) {}); err != nil {
		t.Fatal(err)
	}
	get := func(cert tls.Certificate, method, path string) int {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}}
		req, _ := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", api, path), nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := clientCert(t, "nagios", ca, caKey)
	if code := get(good, "GET", "/api/v1/openapi.json"); code != 200 {
		t.Errorf("certificate from the CA: %d", code)
	}
	if code := get(good, "POST", "/api/v1/queue/flush"); code != 403 {
		t.Errorf("read-role certificate, admin action: %d", code)
	}
	if code := get(clientCert(t, "mallory", other, otherKey), "GET", "/api/v1/openapi.json"); code != 401 {
		t.Errorf("certificate from another CA: %d", code)
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

func clientCert(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
