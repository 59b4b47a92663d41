package oauth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"gatehouse/config"
)

// maxBody bounds a response of the token or device endpoint. x/oauth2 reads
// at most 1 MiB but parses what it read, so a longer form-encoded answer
// would be cut rather than refused: limitBody refuses it before.
const maxBody = 1 << 20

// NewClient is the HTTP client for the token endpoint: TLS 1.2 or later,
// the system roots plus c.CAFile (read with read), a 30 s timeout, no
// proxy (the appliance has none, and the environment does not choose one),
// redirects followed only to the same host, and response bodies over 1 MiB
// refused.
func NewClient(c *config.OAuth2, read func(string) ([]byte, error)) (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if c.CAFile != "" {
		pem, err := read(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("oauth2: ca_file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("oauth2: ca_file %s: no PEM certificate in it", c.CAFile)
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	return &http.Client{
		Transport:     limitBody{tr},
		Timeout:       30 * time.Second,
		CheckRedirect: sameHost,
	}, nil
}

// sameHost follows a redirect only to the host of the first request.
func sameHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	if req.URL.Scheme != "https" || req.URL.Host != via[0].URL.Host {
		return fmt.Errorf("redirect to %s://%s refused: the token endpoint stays on %s", req.URL.Scheme, req.URL.Host, via[0].URL.Host)
	}
	return nil
}

// limited is client with response bodies over maxBody refused; the caller's
// client is not changed.
func limited(client *http.Client) *http.Client {
	if _, ok := client.Transport.(limitBody); ok {
		return client
	}
	c := *client
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = limitBody{rt}
	return &c
}

// limitBody reads a whole response (token responses are small) and refuses
// one over maxBody.
type limitBody struct{ next http.RoundTripper }

func (l limitBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxBody {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: response of %d bytes refused (over 1 MiB)", req.URL.Host, resp.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%s: response over 1 MiB refused", req.URL.Host)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}
