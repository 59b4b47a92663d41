package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"gatehouse/dnsclient"
	"gatehouse/tlsrpt"
)

// Resolver is what MTA-STS needs from DNS: the _mta-sts TXT record and the
// addresses of the policy host. DNS implements it with the appliance's
// resolver; net.DefaultResolver is never used.
type Resolver interface {
	// LookupTXT returns the TXT records at name, each one's strings
	// joined. No record may be an error or an empty answer: both mean
	// "no policy advertised" here.
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DNS is the appliance's resolver (package dnsclient) as a Resolver.
type DNS struct {
	dnsclient.Lookup
	Timeout time.Duration // for each server asked; 5 s when 0
}

// LookupTXT asks the appliance's DNS servers for the TXT records at name.
func (d DNS) LookupTXT(ctx context.Context, name string) ([]string, error) {
	servers := d.Servers
	if len(servers) == 0 {
		servers = dnsclient.Servers(d.ResolvConf) // read at each lookup: the dns service may rewrite it
	}
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	rrs, rcode, err := dnsclient.Query(ctx, servers, name, dns.TypeTXT, timeout)
	if err != nil {
		return nil, err
	}
	if rcode != dns.RcodeSuccess && rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("TXT lookup of %s: %s", name, dns.RcodeToString[rcode])
	}
	var out []string
	for _, rr := range rrs {
		// The TXT records of the answer: at the name, or at the target
		// of a CNAME there (RFC 8461 3.1 allows either).
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// Fetcher gets policy files over HTTPS (RFC 8461 3.3).
type Fetcher struct {
	Resolver Resolver
	// Roots are the CAs the policy host's certificate must chain to: the
	// system roots plus the configured extra CAs, as for delivery. The
	// system roots when Roots or its pool is nil.
	Roots func() *x509.CertPool
	// Timeout bounds a whole fetch (connect, TLS, headers, body); one
	// minute when 0, as RFC 8461 3.3 suggests.
	Timeout time.Duration

	port string // of the policy host: 443 unless a test says otherwise
}

// Fetch gets the policy of domain from
// https://mta-sts.<domain>/.well-known/mta-sts.txt: the certificate
// verified for mta-sts.<domain>, no redirect followed, status 200, media
// type text/plain, at most MaxPolicySize octets. Errors are *tlsrpt.Error
// with the RFC 8460 result type: sts-webpki-invalid for the certificate,
// sts-policy-invalid for the file, sts-policy-fetch-error for the rest.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (*Policy, error) {
	timeout := f.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var roots *x509.CertPool
	if f.Roots != nil {
		roots = f.Roots()
	}
	if roots == nil {
		sys, err := x509.SystemCertPool()
		if err != nil {
			return nil, fetchErr(tlsrpt.STSPolicyFetchError, domain, fmt.Errorf("system roots: %w", err))
		}
		roots = sys
	}
	tr := &http.Transport{
		Proxy:                  nil, // the policy host, directly: no proxy from the environment
		DialContext:            f.dial,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    15 * time.Second,
		ResponseHeaderTimeout:  30 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		DisableKeepAlives:      true, // one request per host and day or so
		DisableCompression:     true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// RFC 8461 3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fetchErr(tlsrpt.STSPolicyFetchError, domain, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if isCertError(err) {
			return nil, fetchErr(tlsrpt.STSWebPKIInvalid, domain, err)
		}
		return nil, fetchErr(tlsrpt.STSPolicyFetchError, domain, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		why := fmt.Errorf("%s: HTTP status %s", url, resp.Status)
		if resp.StatusCode/100 == 3 {
			why = fmt.Errorf("%s: redirect to %q refused (RFC 8461 3.3): %s", url, clip(resp.Header.Get("Location")), resp.Status)
		}
		return nil, fetchErr(tlsrpt.STSPolicyFetchError, domain, why)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fetchErr(tlsrpt.STSPolicyInvalid, domain, fmt.Errorf("%s: media type %q, not text/plain", url, clip(resp.Header.Get("Content-Type"))))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fetchErr(tlsrpt.STSPolicyFetchError, domain, fmt.Errorf("%s: %w", url, err))
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return nil, fetchErr(tlsrpt.STSPolicyInvalid, domain, err)
	}
	return p, nil
}

func fetchErr(rt tlsrpt.ResultType, domain string, err error) error {
	return &tlsrpt.Error{Result: rt, Err: fmt.Errorf("MTA-STS policy of %s: %w", domain, err)}
}

func isCertError(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

// dial connects to the policy host through the given resolver, each of
// its addresses in turn.
func (f *Fetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if f.port != "" {
		port = f.port
	}
	if f.Resolver == nil {
		return nil, errors.New("no resolver")
	}
	ips, err := f.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve %s: no address", host)
	}
	d := net.Dialer{Timeout: 15 * time.Second}
	var errs []error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}
