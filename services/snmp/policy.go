package snmp

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"gatehouse/config"
	"gatehouse/snmp"
)

// policy is what one config says about who may ask what.
type policy struct {
	cfg         *config.Config
	communities map[string]*community
	users       map[string]*user
	// anyone is every source some community or user admits, the
	// monitoring hosts among them: the rest get nothing at all.
	anyone   config.PeerSet
	monitor  config.PeerSet
	resolved map[string][]netip.Addr
	rate     int
}

type community struct {
	allow config.PeerSet
	view  snmp.View
}

type user struct {
	usm snmp.User
	// The pass phrases, for informs: their keys are localized to the
	// receiver's engine.
	authPass, privPass string
	minLevel           int
	allow              config.PeerSet
	view               snmp.View
}

// compile turns the config's snmp section into a policy, the users' keys
// localized to engineID.
func compile(c *config.Config, engineID []byte, resolved map[string][]netip.Addr) (*policy, error) {
	s := c.SNMP
	p := &policy{cfg: c, communities: map[string]*community{}, users: map[string]*user{},
		monitor: c.Monitoring.Hosts, resolved: resolved, rate: s.RatePerSource}
	sets := []config.PeerSet{c.Monitoring.Hosts}
	for _, cm := range s.Communities {
		p.communities[cm.Community] = &community{allow: cm.Allow, view: view(cm.View)}
		sets = append(sets, cm.Allow)
	}
	for _, u := range s.Users {
		usr, authPass, privPass, err := usmUser(u, engineID)
		if err != nil {
			return nil, err
		}
		p.users[u.Name] = &user{usm: usr, authPass: authPass, privPass: privPass, minLevel: levels[u.Level()], allow: u.Allow, view: view(u.View)}
		sets = append(sets, u.Allow)
	}
	p.anyone = config.JoinPeers(sets...)
	return p, nil
}

var levels = map[string]int{config.NoAuthNoPriv: snmp.LevelNoAuthNoPriv, config.AuthNoPriv: snmp.LevelAuthNoPriv, config.AuthPriv: snmp.LevelAuthPriv}

var authProtocols = map[string]snmp.AuthProtocol{"": snmp.AuthNone, "sha": snmp.AuthSHA1, "sha224": snmp.AuthSHA224,
	"sha256": snmp.AuthSHA256, "sha384": snmp.AuthSHA384, "sha512": snmp.AuthSHA512}
var privProtocols = map[string]snmp.PrivProtocol{"": snmp.PrivNone, "aes": snmp.PrivAES128, "aes128": snmp.PrivAES128,
	"aes192": snmp.PrivAES192, "aes256": snmp.PrivAES256}

// usmUser reads a user's pass phrases and localizes its keys.
func usmUser(u config.SNMPUser, engineID []byte) (out snmp.User, authPass, privPass string, err error) {
	out = snmp.User{Name: u.Name, Auth: authProtocols[u.Auth.Protocol], Priv: privProtocols[u.Priv.Protocol]}
	read := func(file string) (string, error) {
		if file == "" {
			return "", nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("snmp: user %s: %w", u.Name, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if authPass, err = read(u.Auth.PasswordFile); err != nil {
		return out, "", "", err
	}
	if privPass, err = read(u.Priv.PasswordFile); err != nil {
		return out, "", "", err
	}
	out.AuthKey, out.PrivKey, err = snmp.LocalizeKeys(engineID, out.Auth, authPass, out.Priv, privPass)
	if err != nil {
		return out, "", "", fmt.Errorf("snmp: user %s: %w", u.Name, err)
	}
	return out, authPass, privPass, nil
}

func view(list []string) snmp.View {
	var v snmp.View
	for _, s := range list {
		if o, err := snmp.ParseOID(s); err == nil {
			v = append(v, o)
		}
	}
	return v
}

// admits says whether a source may use an entry with allow list set: the
// monitoring hosts always may.
func (p *policy) admits(set config.PeerSet, a netip.Addr) bool {
	return set.Contains(a, p.resolved) || p.monitor.Contains(a, p.resolved)
}

// limiter is a token bucket per source: rate a second, bursts of twice
// that. It keeps at most maxSources sources; when full, the idle ones go.
type limiter struct {
	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxSources = 4096

func newLimiter() *limiter { return &limiter{buckets: map[netip.Addr]*bucket{}} }

// allow takes a token for a, if there is one.
func (l *limiter) allow(a netip.Addr, rate int, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := float64(2 * rate)
	b := l.buckets[a]
	if b == nil {
		if len(l.buckets) >= maxSources {
			for k, o := range l.buckets {
				if now.Sub(o.last) > 10*time.Second {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxSources {
				return false
			}
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[a] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
