package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gatehouse/safeio"
)

// Cache holds the policies fetched, one JSON file per domain in a
// directory (on /data), so that they outlive a restart: an attacker who
// blocks the policy host after a restart must not turn enforce into
// opportunistic TLS (RFC 8461 5.1 and 10.2).
type Cache struct {
	dir   string
	fetch *Fetcher
	log   *slog.Logger
	now   func() time.Time

	// retryAfter is how long a failed fetch is not repeated (every
	// delivery to the domain would ask again otherwise).
	retryAfter time.Duration

	mu      sync.Mutex
	entries map[string]*entry   // domain → the policy held
	failed  map[string]failure  // domain → the last failed fetch
	locks   map[string]*refLock // domain → its one Decide at a time
}

// entry is a cached policy, as stored on disk.
type entry struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`     // the TXT record's id the policy was fetched for
	Policy  string    `json:"policy"` // the file as served
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"` // Fetched + max_age

	pol *Policy
}

type failure struct {
	at  time.Time
	id  string // the TXT id that was being fetched
	err error
}

type refLock struct {
	sync.Mutex
	n int
}

// Open loads the policies cached in dir (made if missing); expired ones
// are removed, unreadable ones logged and ignored (the next fetch
// replaces them).
func Open(dir string, f *Fetcher, log *slog.Logger) (*Cache, error) {
	return open(dir, f, log, time.Now)
}

func open(dir string, f *Fetcher, log *slog.Logger, now func() time.Time) (*Cache, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{dir: dir, fetch: f, log: log.With("subsystem", "mta-sts"), now: now, retryAfter: 5 * time.Minute,
		entries: map[string]*entry{}, failed: map[string]failure{}, locks: map[string]*refLock{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mta-sts: cache: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("mta-sts: cache: %w", err)
	}
	t := c.now()
	for _, name := range names {
		e, err := readEntry(name)
		if err != nil {
			c.log.Warn("cached policy unreadable: ignored", "file", name, "err", err)
			continue
		}
		if !t.Before(e.Expires) {
			os.Remove(name)
			continue
		}
		c.entries[e.Domain] = e
	}
	return c, nil
}

func readEntry(name string) (*entry, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var e entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	if !isDomain(e.Domain) || filepath.Base(name) != e.Domain+".json" {
		return nil, fmt.Errorf("domain %q does not belong in this file", e.Domain)
	}
	if e.pol, err = ParsePolicy([]byte(e.Policy)); err != nil {
		return nil, err
	}
	return &e, nil
}

// Decide returns the policy that applies to mail for domain now, or nil
// when there is none (deliver as without MTA-STS). It follows RFC 8461 5.1:
//
//   - The _mta-sts TXT record is looked up at each call. When its id is
//     that of the cached policy, the cached policy is used (and refetched
//     after half its max_age, so that a domain in use does not lose its
//     policy on the day it expires).
//   - A new id, or no unexpired cached policy, means a fetch; the fetched
//     policy is cached for its max_age.
//   - Whatever fails — no TXT record, a DNS error, the fetch — an
//     unexpired cached policy goes on applying (a removed TXT record does
//     not withdraw a policy: mode none does).
//
// The error is never a reason to defer: with a nil policy it says why the
// domain advertises MTA-STS but has no usable policy (a *tlsrpt.Error with
// result type sts-policy-fetch-error, sts-policy-invalid or
// sts-webpki-invalid, for the TLS report); the delivery then goes on as
// without a policy. A failed fetch is repeated after 5 minutes at the
// earliest.
func (c *Cache) Decide(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if !isDomain(domain) {
		return nil, fmt.Errorf("mta-sts: %q is not a domain name", clip(domain))
	}
	unlock := c.lock(domain)
	defer unlock()

	c.mu.Lock()
	cached := c.entries[domain]
	failed, hasFailed := c.failed[domain]
	c.mu.Unlock()
	now := c.now()
	if cached != nil && !now.Before(cached.Expires) {
		cached = nil
	}

	txts, err := c.fetch.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	var rec Record
	if err == nil {
		rec, err = SelectRecord(txts)
	}
	if err != nil {
		if cached != nil {
			if !errors.Is(err, errNoRecord) {
				c.log.Info("TXT record unusable: the cached policy applies", "domain", domain, "err", err)
			}
			return cached.pol, nil
		}
		if !errors.Is(err, errNoRecord) {
			c.log.Debug("no MTA-STS policy", "domain", domain, "err", err)
		}
		return nil, nil
	}

	if cached != nil && cached.ID == rec.ID && now.Sub(cached.Fetched) < cached.pol.MaxAge/2 {
		return cached.pol, nil
	}
	if hasFailed && failed.id == rec.ID && now.Sub(failed.at) < c.retryAfter {
		if cached != nil {
			return cached.pol, nil
		}
		return nil, failed.err
	}

	pol, err := c.fetch.Fetch(ctx, domain)
	if err != nil {
		c.mu.Lock()
		c.failed[domain] = failure{at: now, id: rec.ID, err: err}
		c.mu.Unlock()
		if cached != nil {
			c.log.Warn("policy fetch failed: the cached policy applies", "domain", domain, "id", rec.ID, "cached_id", cached.ID, "err", err)
			return cached.pol, nil
		}
		c.log.Warn("policy fetch failed: no policy applies", "domain", domain, "id", rec.ID, "err", err)
		return nil, err
	}
	e := &entry{Domain: domain, ID: rec.ID, Policy: pol.Text, Fetched: now, Expires: now.Add(pol.MaxAge), pol: pol}
	if err := c.store(e); err != nil {
		// Still the policy now; it is fetched again after a restart.
		c.log.Error("policy not saved", "domain", domain, "err", err)
	}
	c.mu.Lock()
	c.entries[domain] = e
	delete(c.failed, domain)
	c.mu.Unlock()
	if cached == nil || cached.ID != rec.ID {
		c.log.Info("policy fetched", "domain", domain, "id", rec.ID, "mode", pol.Mode, "max_age", pol.MaxAge)
	}
	return pol, nil
}

func (c *Cache) store(e *entry) error {
	b, err := json.MarshalIndent(e, "", "\t")
	if err != nil {
		return err
	}
	return safeio.WriteFile(filepath.Join(c.dir, e.Domain+".json"), append(b, '\n'), 0o600)
}

// lock serialises Decide per domain: one fetch at a time, whatever the
// number of deliveries waiting for it.
func (c *Cache) lock(domain string) (unlock func()) {
	c.mu.Lock()
	l := c.locks[domain]
	if l == nil {
		l = &refLock{}
		c.locks[domain] = l
	}
	l.n++
	c.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		c.mu.Lock()
		if l.n--; l.n == 0 {
			delete(c.locks, domain)
		}
		c.mu.Unlock()
	}
}
