package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gatehouse/tlsrpt"
)

// clock is a settable time for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openCache(t *testing.T, dir string, w *world, clk *clock) *Cache {
	t.Helper()
	c, err := open(dir, w.fetcher(), nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func decide(t *testing.T, c *Cache) (*Policy, error) {
	t.Helper()
	return c.Decide(context.Background(), "Example.COM.")
}

func TestCacheSurvivesRestart(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	clk := &clock{t: time.Now()}
	p, err := decide(t, openCache(t, dir, w, clk))
	if err != nil || p == nil || p.Mode != Enforce {
		t.Fatalf("first Decide: %v, %v", p, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "example.com.json")); err != nil {
		t.Fatal(err)
	}
	// After a restart the policy host is down and the TXT record gone
	// (an attacker's doing): the cached policy still applies.
	w.setHandler(http.NotFound)
	w.dns.set("_mta-sts.example.com")
	c2 := openCache(t, dir, w, clk)
	p, err = decide(t, c2)
	if err != nil || p == nil || p.Mode != Enforce || !p.Match("a.example.net") {
		t.Fatalf("after restart: %v, %v", p, err)
	}
	// And with DNS failing altogether.
	w.dns.setFail(true)
	if p, err = decide(t, c2); err != nil || p == nil {
		t.Fatalf("DNS failing: %v, %v", p, err)
	}
	if n := w.fetchCount(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

func TestCacheIDChange(t *testing.T) {
	w := newWorld(t)
	clk := &clock{t: time.Now()}
	c := openCache(t, t.TempDir(), w, clk)
	if p, err := decide(t, c); err != nil || p.Mode != Enforce {
		t.Fatalf("%v, %v", p, err)
	}
	// The same id: no fetch.
	clk.add(time.Hour)
	if p, err := decide(t, c); err != nil || p.Mode != Enforce || w.fetchCount() != 1 {
		t.Fatalf("same id: %v, %v, %d fetches", p, err, w.fetchCount())
	}
	// A new id: the new policy.
	w.serve("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n")
	w.dns.set("_mta-sts.example.com", `_mta-sts.example.com. 300 IN TXT "v=STSv1; id=2"`)
	if p, err := decide(t, c); err != nil || p.Mode != Testing || w.fetchCount() != 2 {
		t.Fatalf("new id: %v, %v, %d fetches", p, err, w.fetchCount())
	}
	// A new id whose fetch fails: the cached policy goes on applying, and
	// the fetch is not repeated at once.
	w.setHandler(http.NotFound)
	w.dns.set("_mta-sts.example.com", `_mta-sts.example.com. 300 IN TXT "v=STSv1; id=3"`)
	for range 3 {
		if p, err := decide(t, c); err != nil || p.Mode != Testing {
			t.Fatalf("failed fetch: %v, %v", p, err)
		}
	}
	if n := w.fetchCount(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
	clk.add(6 * time.Minute)
	w.serve(testPolicy)
	if p, err := decide(t, c); err != nil || p.Mode != Enforce {
		t.Fatalf("retried fetch: %v, %v", p, err)
	}
}

func TestCacheExpiry(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	clk := &clock{t: time.Now()}
	c := openCache(t, dir, w, clk)
	if p, err := decide(t, c); err != nil || p == nil {
		t.Fatalf("%v, %v", p, err)
	}
	// Past half the max_age the policy is refreshed; a failure then keeps
	// the cached one.
	w.setHandler(http.NotFound)
	clk.add(13 * time.Hour)
	if p, err := decide(t, c); err != nil || p == nil || w.fetchCount() != 2 {
		t.Fatalf("refresh: %v, %v, %d fetches", p, err, w.fetchCount())
	}
	// Past the max_age, with the policy host down: no policy, and the
	// fetch failure as the error for the TLS report.
	clk.add(12 * time.Hour)
	p, err := decide(t, c)
	if p != nil || tlsrpt.ResultOf(err) != tlsrpt.STSPolicyFetchError {
		t.Fatalf("expired: %v, %v", p, err)
	}
	// Nor after a restart, whose Open removes the expired file.
	c2 := openCache(t, dir, w, clk)
	if len(c2.entries) != 0 {
		t.Errorf("expired policy loaded: %v", c2.entries)
	}
	// An expired policy and no TXT record: no policy, no error.
	w.dns.set("_mta-sts.example.com")
	if p, err := decide(t, c2); p != nil || err != nil {
		t.Fatalf("no record: %v, %v", p, err)
	}
}

func TestCacheNoPolicy(t *testing.T) {
	w := newWorld(t)
	c := openCache(t, t.TempDir(), w, &clock{t: time.Now()})
	for _, txt := range [][]string{
		nil,
		{`_mta-sts.example.com. 300 IN TXT "v=STSv1; id=1"`, `_mta-sts.example.com. 300 IN TXT "v=STSv1; id=2"`},
		{`_mta-sts.example.com. 300 IN TXT "v=STSv1; id=bad-id"`},
	} {
		w.dns.set("_mta-sts.example.com", txt...)
		if p, err := decide(t, c); p != nil || err != nil {
			t.Errorf("%q: %v, %v; want no policy", txt, p, err)
		}
	}
	if w.fetchCount() != 0 {
		t.Errorf("fetched without a record")
	}
	if _, err := c.Decide(context.Background(), "../etc"); err == nil {
		t.Error("a path accepted as a domain")
	}
}

func TestCacheSplitTXT(t *testing.T) {
	// A record in several strings is one record.
	w := newWorld(t)
	w.dns.set("_mta-sts.example.com", `_mta-sts.example.com. 300 IN TXT "v=STSv1; " "id=1"`)
	c := openCache(t, t.TempDir(), w, &clock{t: time.Now()})
	if p, err := decide(t, c); err != nil || p == nil {
		t.Fatalf("%v, %v", p, err)
	}
}

func TestCheckMX(t *testing.T) {
	p, _ := ParsePolicy([]byte(testPolicy))
	if err := p.CheckMX("mx.example.com."); err != nil {
		t.Error(err)
	}
	if err := p.CheckMX("evil.example.org"); tlsrpt.ResultOf(err) != tlsrpt.ValidationFailure {
		t.Errorf("got %v, want validation-failure", err)
	}
	var none *Policy
	if none.CheckMX("evil.example.org") != nil || none.Enforced() || none.Reported() {
		t.Error("a nil policy checks something")
	}
	if !p.Enforced() || !p.Reported() {
		t.Error("enforce is not enforced")
	}
}

func TestVerifyCertificate(t *testing.T) {
	ca := newCA(t)
	state := func(c tls.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}
	}
	good := ca.issue(t, time.Now().Add(time.Hour), "mx.example.com")
	for _, tc := range []struct {
		desc string
		cs   tls.ConnectionState
		host string
		want tlsrpt.ResultType
	}{
		{"good", state(good), "mx.example.com.", ""},
		{"wildcard", state(ca.issue(t, time.Now().Add(time.Hour), "*.example.net")), "a.example.net", ""},
		{"other name", state(good), "mx2.example.com", tlsrpt.CertificateHostMismatch},
		{"expired", state(ca.issue(t, time.Now().Add(-time.Hour), "mx.example.com")), "mx.example.com", tlsrpt.CertificateExpired},
		{"unknown CA", state(newCA(t).issue(t, time.Now().Add(time.Hour), "mx.example.com")), "mx.example.com", tlsrpt.CertificateNotTrusted},
		{"no certificate", tls.ConnectionState{}, "mx.example.com", tlsrpt.CertificateNotTrusted},
	} {
		err := VerifyCertificate(tc.cs, ca.pool, tc.host)
		if tlsrpt.ResultOf(err) != tc.want {
			t.Errorf("%s: got %v, want %q", tc.desc, err, tc.want)
		}
	}
}

func TestCacheConcurrent(t *testing.T) {
	// Deliveries waiting on the same domain share one fetch.
	w := newWorld(t)
	c := openCache(t, t.TempDir(), w, &clock{t: time.Now()})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if p, err := decide(t, c); err != nil || p == nil {
				t.Errorf("%v, %v", p, err)
			}
		})
	}
	wg.Wait()
	if n := w.fetchCount(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}
