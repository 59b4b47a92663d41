package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/layout"
	"gatehouse/linuxfw"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// world is what the service acts on in a test: backends that record what
// they are asked to do, in one log, and a resolver the test changes.
type world struct {
	mu       sync.Mutex
	events   []string
	backends map[string]*fakeBackend
	missing  map[string]bool // backends this system lacks
	sets     bool            // the backends apply a change of peers as set updates (setsBackend)
	names    map[string][]netip.Addr
	ttl      time.Duration
	dnsDown  bool // DNS answers nothing at all (a timeout, SERVFAIL)
	now      time.Time
	conds    []string
}

type fakeBackend struct {
	w         *world
	name      string
	failApply int // the next n applies fail
	installed *linuxfw.Ruleset
	show      string
	drops     linuxfw.Drops // the kernel's counters; an apply starts them at zero
	dropsErr  error
}

func (b *fakeBackend) Drops() (linuxfw.Drops, error) {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	return b.drops, b.dropsErr
}

// count has the kernel's counters grow: in and out packets of 100 bytes.
func (b *fakeBackend) count(in, out uint64) {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	b.drops.InPackets += in
	b.drops.InBytes += 100 * in
	b.drops.OutPackets += out
	b.drops.OutBytes += 100 * out
}

func (b *fakeBackend) Name() string { return b.name }

func (b *fakeBackend) Apply(rs linuxfw.Ruleset) error {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	what := "config"
	if rs.Boot {
		what = "default-deny"
	}
	if b.failApply > 0 {
		b.failApply--
		b.w.events = append(b.w.events, b.name+" apply "+what+" FAILED")
		return fmt.Errorf("%s: apply refused", b.name)
	}
	b.w.events = append(b.w.events, b.name+" apply "+what)
	b.installed = &rs
	b.drops = linuxfw.Drops{}
	return nil
}

func (b *fakeBackend) Remove() error {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	b.w.events = append(b.w.events, b.name+" remove")
	b.installed = nil
	return nil
}

func (b *fakeBackend) Show() (string, error) {
	if b.show == "" {
		return "", errors.New(b.name + ": nothing to read back")
	}
	return b.show, nil
}

// choose is linuxfw.Select over the fake backends: auto is nftables if
// the system has it, else iptables.
func (w *world) choose(pref string) (linuxfw.Backend, error) {
	if pref == "auto" || pref == "" {
		for _, n := range []string{"nftables", "iptables"} {
			if !w.missing[n] {
				return w.backends[n], nil
			}
		}
		return nil, errors.New("firewall: no backend")
	}
	if w.missing[pref] {
		return nil, fmt.Errorf("firewall: %s not available", pref)
	}
	if w.sets {
		return setsBackend{w.backends[pref]}, nil
	}
	return w.backends[pref], nil
}

// setsBackend applies a change of peers only as set updates, as
// linuxfw.NFT does: the rules stay, and their counters go on.
type setsBackend struct{ *fakeBackend }

func (b setsBackend) Update(rs linuxfw.Ruleset) (linuxfw.Applied, error) {
	b.w.mu.Lock()
	prev, drops := b.installed, b.drops
	b.w.mu.Unlock()
	if err := b.Apply(rs); err != nil {
		return linuxfw.Applied{}, err
	}
	withoutPeers := func(rs linuxfw.Ruleset) linuxfw.Ruleset {
		rs.ResolvedAt, rs.ResolveAgain = time.Time{}, time.Time{}
		rs.In, rs.Out = slices.Clone(rs.In), slices.Clone(rs.Out)
		for _, rules := range [][]linuxfw.Rule{rs.In, rs.Out} {
			for i := range rules {
				rules[i].V4, rules[i].V6 = nil, nil
			}
		}
		return rs
	}
	if prev == nil || !reflect.DeepEqual(withoutPeers(*prev), withoutPeers(rs)) {
		return linuxfw.Applied{Replaced: true}, nil
	}
	b.w.mu.Lock()
	b.drops = drops
	b.w.mu.Unlock()
	return linuxfw.Applied{Sets: 1, Added: 1, Removed: 1}, nil
}

func (w *world) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	a, _, err := w.LookupTTL(ctx, host)
	return a, err
}

func (w *world) LookupTTL(_ context.Context, host string) ([]netip.Addr, time.Duration, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dnsDown {
		return nil, 0, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
	}
	if a, ok := w.names[host]; ok {
		return a, w.ttl, nil
	}
	return nil, 0, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (w *world) condition(name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conds = append(w.conds, name)
	return nil
}

// takeEvents returns what the backends were asked to do since last time.
func (w *world) takeEvents() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.events
	w.events = nil
	return e
}

func (w *world) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

// dnsFails has DNS answer nothing (down is true) or answer again, and lets
// the answers run out.
func (w *world) dnsFails(down bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(dnsclient.MaxTTL + time.Second)
	w.dnsDown = down
}

// setName changes what DNS answers for host ("" : no such host) and lets
// the answers run out.
func (w *world) setName(host, addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(dnsclient.MaxTTL + time.Second)
	if addr == "" {
		delete(w.names, host)
		return
	}
	if addr == "" {
		delete(w.names, host)
		return
	}
	w.names[host] = []netip.Addr{netip.MustParseAddr(addr)}
}

func newWorld(t *testing.T) (*world, *Firewall) {
	t.Helper()
	w := &world{backends: map[string]*fakeBackend{}, missing: map[string]bool{}, ttl: time.Hour, now: time.Unix(1e9, 0),
		names: map[string][]netip.Addr{
			"admin.example.com": {netip.MustParseAddr("198.51.100.7")}, "0.pool.ntp.org": {netip.MustParseAddr("192.0.2.123")},
			"1.pool.ntp.org":  {netip.MustParseAddr("2001:db8::123")},
			"cmg.example.com": {netip.MustParseAddr("203.0.113.25")}, "smtp.office365.com": {netip.MustParseAddr("203.0.113.26")},
			"pop.example.net": {netip.MustParseAddr("203.0.113.110")}, "outlook.office365.com": {netip.MustParseAddr("203.0.113.111")},
			"imap.gmail.com": {netip.MustParseAddr("203.0.113.112")}, "login.microsoftonline.com": {netip.MustParseAddr("203.0.113.113")},
			"oauth2.googleapis.com": {netip.MustParseAddr("203.0.113.114")}}}
	for _, n := range []string{"nftables", "iptables"} {
		w.backends[n] = &fakeBackend{w: w, name: n}
	}
	f := newFirewall(slog.New(slog.DiscardHandler), w.condition, dnsclient.NewNamesAt(w, w.clock), w.choose)
	f.now = w.clock
	return w, f
}

// exampleConfig is the example config with the firewall backend set.
func exampleConfig(t *testing.T, backend string) *config.Config {
	t.Helper()
	c, _, err := config.Load(filepath.Join("..", "..", "config", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.Firewall.Backend = backend
	return c
}

// reload is what a reload hands the service: a new config, equal or not.
func reload(c *config.Config) *config.Config {
	n := *c
	return &n
}

func round(t *testing.T, f *Firewall, c *config.Config) time.Duration {
	t.Helper()
	next, err := f.Reconcile(context.Background(), c)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return next
}

func wantEvents(t *testing.T, w *world, want ...string) {
	t.Helper()
	if got := w.takeEvents(); !slices.Equal(got, want) {
		t.Errorf("backends were asked %q, want %q", got, want)
	}
}

func aboutAnHour(d time.Duration) bool { return d > 59*time.Minute && d <= time.Hour }

// admitted is the inbound rule line of the path named function.
func admitted(d status.Firewall, function string) string {
	for _, l := range d.In {
		if strings.HasSuffix(l, "# "+function) {
			return l
		}
	}
	return ""
}

func detail(f *Firewall) status.Firewall { return f.Status().Detail.(status.Firewall) }

// The first round puts the default deny in, says so, then the config's
// ruleset: ready. The ban sets go in with both, dropping only in the
// config's.
func TestStartDefaultDenyThenConfig(t *testing.T) {
	w, f := newWorld(t)
	c := exampleConfig(t, "auto")
	next := round(t, f, c)
	wantEvents(t, w, "nftables apply default-deny", "nftables apply config")
	if !slices.Equal(w.conds, []string{DefaultDenyCondition}) {
		t.Errorf("conditions %q, want the default deny once", w.conds)
	}
	st := f.Status()
	d := st.Detail.(status.Firewall)
	if !st.Ready || d.Ruleset != "config" || d.Backend != "nftables" || d.LastError != "" || d.Applies != 1 {
		t.Errorf("status %+v (ready %v)", d, st.Ready)
	}
	if !aboutAnHour(next) {
		t.Errorf("next round in %v, want the names' TTL, 1h", next)
	}
	rs := w.backends["nftables"].installed
	want := linuxfw.BanSet{Name: layout.SSHBanSet, Proto: "tcp", Ports: []uint16{22}, Timeout: c.SSH.Ban.For.Duration}
	if len(rs.BanSets) != 2 || fmt.Sprint(rs.BanSets[0]) != fmt.Sprint(want) {
		t.Errorf("config's ban sets %+v, want %+v", rs.BanSets, want)
	}

	// The same again writes nothing.
	round(t, f, c)
	wantEvents(t, w)
	if len(w.conds) != 1 {
		t.Errorf("conditions %q, want the default deny once", w.conds)
	}
}

// The default deny keeps the ban sets, dropping nothing; with the SSH
// shell and the admin service off, so does the config's ruleset; with the
// admin service on, its set drops at both its ports.
func TestBanSetsKeptWhileShellOff(t *testing.T) {
	w, f := newWorld(t)
	c := exampleConfig(t, "auto")
	c.SSH.AuthorizedKeys = nil
	admin := c.Admin
	c.Admin = nil
	round(t, f, c)
	rs := w.backends["nftables"].installed
	if len(rs.BanSets) != 2 || rs.BanSets[0].Name != layout.SSHBanSet || rs.BanSets[1].Name != layout.AdminBanSet ||
		len(rs.BanSets[0].Ports)+len(rs.BanSets[1].Ports) != 0 {
		t.Errorf("ban sets with the shell and admin off: %+v, want %s and %s kept without ports", rs.BanSets, layout.SSHBanSet, layout.AdminBanSet)
	}
	dd := linuxfw.DefaultDeny(banSets(exampleConfig(t, "auto"))...)
	if len(dd.BanSets) != 2 || len(dd.BanSets[0].Ports)+len(dd.BanSets[1].Ports) != 0 {
		t.Errorf("default deny's ban sets %+v, want kept without ports", dd.BanSets)
	}
	c.Admin = admin
	if got := banSets(c)[1]; !slices.Equal(got.Ports, []uint16{8443, 8445}) || got.Timeout != 15*time.Minute {
		t.Errorf("admin ban set with the service on: %+v", got)
	}
}

// A backend the system lacks: what auto finds, and why in the status.
func TestWantedBackendMissingFallsBack(t *testing.T) {
	w, f := newWorld(t)
	w.missing["iptables"] = true
	round(t, f, exampleConfig(t, "iptables"))
	wantEvents(t, w, "nftables apply default-deny", "nftables apply config")
	st := f.Status()
	d := st.Detail.(status.Firewall)
	if !st.Ready || d.Backend != "nftables" || !strings.Contains(d.LastError, "backend iptables not available, nftables used") {
		t.Errorf("status %+v (ready %v)", d, st.Ready)
	}
	if !strings.Contains(st.Summary, "ERROR: backend iptables not available") {
		t.Errorf("summary %q lacks the error", st.Summary)
	}
}

// No backend at all: the service cannot start.
func TestNoBackendEndsTheService(t *testing.T) {
	w, f := newWorld(t)
	w.missing["iptables"], w.missing["nftables"] = true, true
	if _, err := f.Reconcile(context.Background(), exampleConfig(t, "auto")); err == nil {
		t.Fatal("Reconcile without a backend: no error")
	}
	wantEvents(t, w)
}

// A default deny that fails is in the status; the config's ruleset that
// then goes in denies by default too, and says so.
func TestDefaultDenyFails(t *testing.T) {
	w, f := newWorld(t)
	w.backends["nftables"].failApply = 1
	round(t, f, exampleConfig(t, "auto"))
	wantEvents(t, w, "nftables apply default-deny FAILED", "nftables apply config")
	if d := detail(f); d.Ruleset != "config" || !f.Status().Ready {
		t.Errorf("status %+v", d)
	}
	if !slices.Equal(w.conds, []string{DefaultDenyCondition}) {
		t.Errorf("conditions %q, want the default deny once", w.conds)
	}
}

// An apply that fails leaves the service not ready, on the default deny,
// and retried within 10 s, also with the same rules; then it is ready.
func TestApplyFailsThenRetried(t *testing.T) {
	w, f := newWorld(t)
	c := exampleConfig(t, "auto")
	w.backends["nftables"].failApply = 2
	next := round(t, f, c)
	wantEvents(t, w, "nftables apply default-deny FAILED", "nftables apply config FAILED")
	st := f.Status()
	if st.Ready || next > 10*time.Second || !strings.Contains(st.Detail.(status.Firewall).LastError, "apply refused") {
		t.Errorf("after a failed apply: ready %v, next %v, status %+v", st.Ready, next, st.Detail)
	}
	if len(w.conds) != 0 {
		t.Errorf("conditions %q with no filter in", w.conds)
	}
	next = round(t, f, c)
	wantEvents(t, w, "nftables apply config")
	if st := f.Status(); !st.Ready || !aboutAnHour(next) || st.Detail.(status.Firewall).LastError != "" {
		t.Errorf("after the retry: ready %v, next %v, status %+v", st.Ready, next, st.Detail)
	}
}

// A host name that does not resolve at the first install: what does
// resolve goes in (narrower), the error is shown, and the name is asked
// again within 10 s; once it resolves, the full ruleset goes in.
func TestUnresolvedNameAtFirstInstallsLenient(t *testing.T) {
	w, f := newWorld(t)
	w.setName("admin.example.com", "")
	c := exampleConfig(t, "auto")
	next := round(t, f, c)
	wantEvents(t, w, "nftables apply default-deny", "nftables apply config")
	st := f.Status()
	d := st.Detail.(status.Firewall)
	if !st.Ready || next > 10*time.Second || !strings.Contains(d.LastError, "admin.example.com does not resolve") {
		t.Errorf("ready %v, next %v, status %+v", st.Ready, next, d)
	}
	// admin.example.com is one of the administration path's peers.
	if l := admitted(d, "Administration access"); l == "" || strings.Contains(l, "198.51.100.7") {
		t.Errorf("the administration path with its name unresolved: %q", l)
	}
	// Still not resolving: what is in stays, no write.
	round(t, f, c)
	wantEvents(t, w)
	w.setName("admin.example.com", "198.51.100.77")
	round(t, f, c)
	wantEvents(t, w, "nftables apply config")
	if d := detail(f); d.LastError != "" || !strings.Contains(admitted(d, "Administration access"), "198.51.100.77") {
		t.Errorf("after the name resolved: %+v", d)
	}
}

// A name DNS says no longer exists matches no one: the rules go in
// without its address (narrower, never wider). DNS that answers nothing
// at all keeps the last good answer: a server outage locks no one out.
func TestNameLostLaterMatchesNoOne(t *testing.T) {
	w, f := newWorld(t)
	c := exampleConfig(t, "auto")
	round(t, f, c)
	w.takeEvents()
	w.dnsFails(true)
	round(t, f, c)
	wantEvents(t, w)
	if l := admitted(detail(f), "Administration access"); !strings.Contains(l, "198.51.100.7") {
		t.Errorf("DNS down: the name's last good address left the rules: %q", l)
	}
	w.dnsFails(false)
	w.setName("admin.example.com", "")
	next := round(t, f, c)
	wantEvents(t, w, "nftables apply config")
	st := f.Status()
	if !st.Ready || next > 10*time.Second || !strings.Contains(st.Detail.(status.Firewall).LastError, "does not resolve") {
		t.Errorf("ready %v, next %v, status %+v", st.Ready, next, st.Detail)
	}
	if l := admitted(detail(f), "Administration access"); strings.Contains(l, "198.51.100.7") {
		t.Errorf("a name that no longer exists still admits its old address: %q", l)
	}
}

// Host names are asked again when their answers run out, and a changed
// answer goes in.
func TestHostNameFollowsTTL(t *testing.T) {
	w, f := newWorld(t)
	w.ttl = 42 * time.Second
	c := exampleConfig(t, "auto")
	next := round(t, f, c)
	if next < 40*time.Second || next > 42*time.Second {
		t.Errorf("next round in %v, want the TTL, 42s", next)
	}
	if d := detail(f); d.NextLookup.IsZero() {
		t.Error("no next lookup in the status")
	}
	w.takeEvents()
	w.setName("admin.example.com", "198.51.100.8")
	round(t, f, c)
	wantEvents(t, w, "nftables apply config")
	if d := detail(f); d.Applies != 2 || !strings.Contains(admitted(d, "Administration access"), "198.51.100.8") {
		t.Errorf("after the answer changed: %+v", d)
	}
}

// A reload that asks for another backend: the new one's rules go in
// before the old one's come out.
func TestBackendSwitch(t *testing.T) {
	w, f := newWorld(t)
	c := exampleConfig(t, "auto")
	round(t, f, c)
	w.takeEvents()
	round(t, f, reload(exampleConfig(t, "iptables")))
	wantEvents(t, w, "iptables apply config", "nftables remove")
	d := detail(f)
	if d.Backend != "iptables" || d.Ruleset != "config" || d.Applies != 2 || d.LastError != "" {
		t.Errorf("status after the switch %+v", d)
	}
	// A reload of the same config changes nothing.
	round(t, f, reload(exampleConfig(t, "iptables")))
	wantEvents(t, w)
}

// A switch whose new backend refuses the rules keeps the old one, and
// takes away what of the new one's went in.
func TestBackendSwitchApplyFails(t *testing.T) {
	w, f := newWorld(t)
	round(t, f, exampleConfig(t, "auto"))
	w.takeEvents()
	w.backends["iptables"].failApply = 1
	round(t, f, reload(exampleConfig(t, "iptables")))
	wantEvents(t, w, "iptables apply config FAILED", "iptables remove")
	d := detail(f)
	if d.Backend != "nftables" || !f.Status().Ready || !strings.Contains(d.LastError, "backend not switched to iptables") {
		t.Errorf("status %+v", d)
	}
}

// A switch whose rules do not build (a name does not resolve) keeps the
// old backend.
func TestBackendSwitchBuildFails(t *testing.T) {
	w, f := newWorld(t)
	round(t, f, exampleConfig(t, "auto"))
	w.takeEvents()
	w.setName("admin.example.com", "")
	round(t, f, reload(exampleConfig(t, "iptables")))
	// The old backend stays; the name matches no one there.
	wantEvents(t, w, "nftables apply config")
	if d := detail(f); d.Backend != "nftables" || !strings.Contains(d.LastError, "does not resolve") {
		t.Errorf("status %+v", d)
	}
}

// A switch to a backend the system lacks keeps the running one and says so
// until a reload asks for one it has.
func TestBackendSwitchUnavailable(t *testing.T) {
	w, f := newWorld(t)
	round(t, f, exampleConfig(t, "auto"))
	w.takeEvents()
	w.missing["iptables"] = true
	c := reload(exampleConfig(t, "iptables"))
	round(t, f, c)
	wantEvents(t, w)
	if d := detail(f); d.Backend != "nftables" || !strings.Contains(d.LastError, "backend iptables not available, nftables kept") {
		t.Errorf("status %+v", d)
	}
	round(t, f, c) // a timed round: the reason stays
	if d := detail(f); !strings.Contains(d.LastError, "nftables kept") {
		t.Errorf("status after a timed round %+v", d)
	}
	round(t, f, reload(exampleConfig(t, "nftables")))
	if d := detail(f); d.LastError != "" {
		t.Errorf("status after a reload back %+v", d)
	}
}

// The socket answers with the rules the backend in use reads back.
func TestSocketShowsInstalledRules(t *testing.T) {
	w, f := newWorld(t)
	sock := filepath.Join(t.TempDir(), "firewall", "firewall.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.serve(ctx, sock) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	show := func() (status.FirewallRules, error) {
		var r status.FirewallRules
		err := sockrpc.Call(sock, 5*time.Second, status.FirewallRequest{Verb: "show"}, &r)
		return r, err
	}
	var err error
	for range 100 { // the socket is made in the background
		var de *sockrpc.DialError
		if _, err = show(); !errors.As(err, &de) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil || !strings.Contains(err.Error(), "no backend") {
		t.Errorf("before the first round: %v, want no backend yet", err)
	}

	round(t, f, exampleConfig(t, "auto"))
	w.backends["nftables"].show = "table inet gatehouse {\n}\n"
	in, err := show()
	if err != nil || in.Backend != "nftables" || in.Rules != "table inet gatehouse {\n}\n" {
		t.Errorf("show = %+v, %v", in, err)
	}
	w.backends["nftables"].show = ""
	if _, err := show(); err == nil {
		t.Errorf("a failed read-back: no error")
	}
}

// The drop counters are read every round and only grow: what they grew by
// before a replacement started them at zero is kept; a failed read keeps
// the figures and says why.
func TestDropsCountedAcrossReplacements(t *testing.T) {
	w, f := newWorld(t)
	c := exampleConfig(t, "auto")
	round(t, f, c)
	nft := w.backends["nftables"]
	if d := detail(f); d.Drops != (status.FirewallDrops{}) || d.DropsRead.IsZero() {
		t.Errorf("drops after the first round: %+v, read %v", d.Drops, d.DropsRead)
	}
	nft.count(5, 1)
	round(t, f, c)
	want := status.FirewallDrops{In: status.DropCount{Packets: 5, Bytes: 500}, Out: status.DropCount{Packets: 1, Bytes: 100}}
	if d := detail(f); d.Drops != want {
		t.Errorf("drops %+v, want %+v", d.Drops, want)
	}
	// A new ruleset: counted up to the replacement, then from zero.
	nft.count(2, 0)
	w.setName("admin.example.com", "198.51.100.8")
	round(t, f, c)
	wantEvents(t, w, "nftables apply default-deny", "nftables apply config", "nftables apply config")
	nft.count(3, 2)
	round(t, f, c)
	want = status.FirewallDrops{In: status.DropCount{Packets: 10, Bytes: 1000}, Out: status.DropCount{Packets: 3, Bytes: 300}}
	if d := detail(f); d.Drops != want {
		t.Errorf("drops across a replacement %+v, want %+v", d.Drops, want)
	}
	// Started at zero behind the service's back (someone flushed it).
	w.mu.Lock()
	nft.drops = linuxfw.Drops{InPackets: 1, InBytes: 100}
	nft.dropsErr = errors.New("netlink: gone")
	w.mu.Unlock()
	round(t, f, c)
	if d := detail(f); d.Drops != want || d.DropsError != "netlink: gone" {
		t.Errorf("after a failed read: %+v %q, want %+v kept and the error", d.Drops, d.DropsError, want)
	}
	w.mu.Lock()
	nft.dropsErr = nil
	w.mu.Unlock()
	round(t, f, c)
	want.In = status.DropCount{Packets: 11, Bytes: 1100}
	if d := detail(f); d.Drops != want || d.DropsError != "" {
		t.Errorf("after a reset: %+v %q, want %+v", d.Drops, d.DropsError, want)
	}
}

// A change of peers applied as set updates leaves the counters running:
// what they grew by is counted once, not again from zero.
func TestDropsCountedAcrossSetUpdates(t *testing.T) {
	w, f := newWorld(t)
	w.sets = true
	c := exampleConfig(t, "auto")
	round(t, f, c)
	nft := w.backends["nftables"]
	nft.count(5, 1)
	round(t, f, c)
	nft.count(2, 0)
	w.setName("admin.example.com", "198.51.100.8")
	round(t, f, c)
	wantEvents(t, w, "nftables apply default-deny", "nftables apply config", "nftables apply config")
	if !strings.Contains(admitted(detail(f), "Administration access"), "198.51.100.8") {
		t.Errorf("the new address is not in the status: %q", detail(f).In)
	}
	nft.count(3, 2)
	round(t, f, c)
	want := status.FirewallDrops{In: status.DropCount{Packets: 10, Bytes: 1000}, Out: status.DropCount{Packets: 3, Bytes: 300}}
	if d := detail(f); d.Drops != want {
		t.Errorf("drops across a set update %+v, want %+v", d.Drops, want)
	}
}
