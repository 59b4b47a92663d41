package linuxfw

import (
	"context"
	"net/netip"
	"time"

	"gatehouse/dnsclient"
)

// TTLResolver is a Resolver that also says how long its answer holds.
type TTLResolver interface {
	Resolver
	LookupTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error)
}

// DNSLookup is the appliance's resolver: it asks the DNS servers directly,
// for the answers' TTLs.
type DNSLookup = dnsclient.Lookup

// DefaultTTL is how long an answer without a TTL is trusted.
const DefaultTTL = dnsclient.DefaultTTL
