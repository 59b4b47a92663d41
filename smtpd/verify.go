package smtpd

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"gatehouse/delivery"
	"gatehouse/queue"
)

// How long a verification holds, and how many are kept. A user created
// on the internal server is accepted within the negative time; one
// removed is still accepted (and bounced by the internal server) for the
// positive time, as with Postfix's verify(8).
const (
	verifyPositive = 24 * time.Hour
	verifyNegative = time.Hour
	verifyCacheMax = 100_000
	verifyProbes   = 8 // probe connections to next hops at once
)

// verifier checks, before a recipient of a managed domain is accepted,
// that its next hop would take it (Postfix's reject_unverified_recipient).
// Mail for addresses the internal server does not know is refused at RCPT
// instead of accepted and bounced to its sender, who for such mail is
// most often forged: backscatter. A next hop that cannot be asked gets
// the client a temporary refusal, never an acceptance.
type verifier struct {
	tr    *delivery.Transport
	log   *slog.Logger
	slots chan struct{}
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]verdict
}

type verdict struct {
	refusal string // "" when the next hop takes the address
	expires time.Time
}

func newVerifier(tr *delivery.Transport, log *slog.Logger) *verifier {
	return &verifier{tr: tr, log: log, slots: make(chan struct{}, verifyProbes), now: time.Now, cache: map[string]verdict{}}
}

// check asks (or remembers) whether route's next hop takes addr.
func (v *verifier) check(ctx context.Context, route queue.Route, addr string) *smtp.SMTPError {
	key := route.String() + " " + strings.ToLower(addr)
	v.mu.Lock()
	d, ok := v.cache[key]
	v.mu.Unlock()
	if !ok || !v.now().Before(d.expires) {
		var temp error
		d, temp = v.ask(ctx, route, addr)
		if temp != nil {
			v.log.Warn("recipient could not be verified", "to", addr, "route", route.String(), "err", temp)
			return smtpErr(450, smtp.EnhancedCode{4, 1, 1}, "Recipient address verification failed: try again later")
		}
		v.remember(key, d)
	}
	if d.refusal != "" {
		return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "Recipient address rejected: undeliverable address: "+d.refusal)
	}
	return nil
}

// ask probes the next hop. A temporary error means there is no answer.
func (v *verifier) ask(ctx context.Context, route queue.Route, addr string) (verdict, error) {
	select {
	case v.slots <- struct{}{}:
	case <-ctx.Done():
		return verdict{}, ctx.Err()
	}
	defer func() { <-v.slots }()
	refusal, err := v.tr.Probe(ctx, route, addr)
	if err != nil {
		return verdict{}, err
	}
	now := v.now()
	switch {
	case refusal == nil:
		return verdict{expires: now.Add(verifyPositive)}, nil
	case refusal.Code >= 500:
		return verdict{refusal: printable(refusal.Text), expires: now.Add(verifyNegative)}, nil
	}
	return verdict{}, refusal // 4xx: no answer yet
}

// remember keeps a verdict, making room first when the cache is full
// (harvesting fills it with negative answers): expired ones go, then
// any tenth.
func (v *verifier) remember(key string, d verdict) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= verifyCacheMax {
		now := v.now()
		for k, e := range v.cache {
			if !now.Before(e.expires) {
				delete(v.cache, k)
			}
		}
		if len(v.cache) >= verifyCacheMax {
			drop := len(v.cache) / 10
			for k := range v.cache {
				if drop == 0 {
					break
				}
				delete(v.cache, k)
				drop--
			}
		}
	}
	v.cache[key] = d
}

// printable keeps a remote server's words to one printable line.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
