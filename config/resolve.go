package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Resolver looks host names up (net.DefaultResolver, or a fake in tests).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// LoadResolved is Load, and then every host name that becomes a peer of
// an allow list (firewall paths, the SSH allowlist, the monitoring hosts,
// the relay's trusted networks and inbound connectors) is looked up. An operator applying a config learns at the line that names it that
// a name does not resolve, rather than later from a rule that lost its
// peer. Boot does not use it: names are looked up before the network is
// up there, and the firewall retries them. A name DNS says does not exist
// is an error; one DNS could not be asked about (no server answered) only
// a warning, so that a config can still be applied while DNS is broken.
func LoadResolved(ctx context.Context, path string, r Resolver) (*Config, []*Error, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	c, idx, warns, err := parse(path, data)
	if err != nil {
		return nil, warns, err
	}
	type name struct{ path, host, who string }
	var names []name
	add := func(field, who string, peers PeerSet) {
		// A loaded set holds every entry written, so its index is the
		// entry's in the file.
		for i, p := range peers.peers {
			if p.Host != "" {
				names = append(names, name{fmt.Sprintf("%s[%d]", field, i), p.Host, who})
			}
		}
	}
	const fw, relay = "the firewall could not let this peer in", "the relay could not recognise this peer"
	for i, p := range c.Firewall.Paths {
		add(fmt.Sprintf("firewall.paths[%d].peers", i), fw, p.Peers)
	}
	if c.SSHEnabled() {
		add("ssh.allow", fw, c.SSH.Allow)
	}
	add("monitoring.hosts", fw, c.Monitoring.Hosts)
	if c.Cluster != nil {
		add("cluster.peers", fw, c.Cluster.Peers)
	}
	if c.SMTP != nil {
		add("smtp.trusted_networks", relay, c.SMTP.TrustedNetworks)
		for i, ic := range c.SMTP.InboundConnectors {
			add(fmt.Sprintf("smtp.inbound_connectors[%d].networks", i), relay, ic.Networks)
		}
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		ck   checker
		seen = map[string]bool{}
	)
	for _, n := range names {
		if seen[n.path] {
			continue
		}
		seen[n.path] = true
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			addrs, err := r.LookupNetIP(lctx, "ip", n.host)
			var de *net.DNSError
			switch {
			case err == nil && len(addrs) > 0:
			case err == nil || errors.As(err, &de) && de.IsNotFound:
				mu.Lock()
				ck.errf(n.path, "host name %s does not resolve: %s", n.host, n.who)
				mu.Unlock()
			default:
				// DNS could not be asked: no reason to refuse a config
				// (perhaps the one that mends DNS); the firewall retries.
				mu.Lock()
				ck.warnf(n.path, "host name %s could not be looked up now (%v); it matches no one until it resolves", n.host, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	warns = append(warns, idx.place(path, ck.warns)...)
	if len(ck.errs) > 0 {
		return nil, warns, Errors(idx.place(path, ck.errs))
	}
	return c, warns, nil
}
