// Package cluster makes appliances one cluster: backends are Raft voters
// (github.com/hashicorp/raft), frontends receive the replicated log but
// never lead. The cluster agrees on the shared config (each version with
// its author, time and hash, and the secret files it names), the
// commit-confirm state of an apply, the join tokens and the membership.
// The leader asks every node for its status; nodes never need to dial a
// frontend's way in reverse.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gatehouse/config"
	"gatehouse/safeio"
	"gatehouse/status"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Local is the node's own side: PID 1, which runs the config.
type Local interface {
	// Install makes v the running config's shared part, beside this
	// node's own sections; within > 0: it comes back by itself unless
	// Confirm follows in time.
	Install(v *Version, within time.Duration) error
	Confirm() error
	// Shared is the running config's shared part.
	Shared() ([]byte, error)
	// Report is how the node is: its services, queue, clock.
	Report() status.ClusterReport
}

// Options configure a node.
type Options struct {
	Dir     string         // the node's cluster state (/data/cluster)
	Name    string         // the node's name
	Role    string         // backend or frontend: how it joins
	Address netip.AddrPort // where the other nodes reach it; it listens on this port
	// ListenAddr overrides where it listens (tests); default ":PORT".
	ListenAddr     string
	MaxClockOffset time.Duration
	ReportInterval time.Duration
	StaleAfter     time.Duration
	// ClockSkew shifts the clock this node shows others (tests of the
	// join's clock check; never set on an appliance).
	ClockSkew time.Duration
	Version   string // gatehouse's
	Local     Local
	Log       *slog.Logger
	// Changed, when set, is told (without blocking) whenever what
	// NodeStatus shows has changed: the service reports it at once.
	Changed chan<- struct{}
}

// Files in Dir.
const (
	fileCert    = "node.crt"
	fileKey     = "node.key"
	fileCA      = "ca.crt"
	fileCAKey   = "ca.key"
	fileKeyring = "cluster.key"
	fileRaft    = "raft.db"
	dirSnaps    = "snapshots"
)

// Node is this appliance as a member of the cluster.
type Node struct {
	opts      Options
	log       *slog.Logger
	advertise net.Addr
	fsm       *fsm

	mu      sync.Mutex
	id      *identity
	raft    *raft.Raft
	store   *raftboltdb.BoltStore
	mux     *mux
	trans   *raft.NetworkTransport
	stop    chan struct{} // closed when the running node stops
	loops   sync.WaitGroup
	applied appliedState
	reports map[string]seen
	// A follower's last copy of the leader's view.
	leaderView   *status.Cluster
	leaderViewAt time.Time
}

type appliedState struct {
	seq     uint64
	hash    string
	pending bool // installed awaiting confirmation
	err     string
}

// seen is a node's last report as the leader received it.
type seen struct {
	report status.ClusterReport
	at     time.Time
	offset time.Duration
}

// Open starts the node: a node that has joined (its certificate and the
// cluster key are in Dir) takes its place in the cluster at once; one
// that has not waits for Init or Join.
func Open(opts Options) (*Node, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n := &Node{opts: opts, log: opts.Log, advertise: net.TCPAddrFromAddrPort(opts.Address), reports: map[string]seen{}}
	if _, err := os.Stat(filepath.Join(opts.Dir, fileCert)); err == nil {
		if err := n.start(false); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Joined reports whether this node is a member.
func (n *Node) Joined() bool { return n.identity() != nil }

func (n *Node) identity() *identity {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.id
}

func (n *Node) path(name string) string { return filepath.Join(n.opts.Dir, name) }

// now is the clock this node shows the others.
func (n *Node) now() time.Time { return time.Now().Add(n.opts.ClockSkew) }

// start brings the node up from what Dir holds; bootstrap makes it the
// first voter of a new cluster.
func (n *Node) start(bootstrap bool) error {
	read := func(name string) []byte {
		b, _ := os.ReadFile(n.path(name))
		return b
	}
	id, err := loadIdentity(read(fileCert), read(fileKey), read(fileCA))
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	seal, err := newSealer(read(fileKeyring))
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	n.fsm = newFSM(seal)
	listen := n.opts.ListenAddr
	if listen == "" {
		listen = fmt.Sprintf(":%d", n.opts.Address.Port())
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cluster: listen on %s: %w", listen, err)
	}
	m := &mux{ln: ln, node: n, raftC: make(chan net.Conn), log: n.log, done: make(chan struct{}), slots: make(chan struct{}, maxHandshakes)}
	store, err := raftboltdb.New(raftboltdb.Options{Path: n.path(fileRaft)})
	if err != nil {
		ln.Close()
		return fmt.Errorf("cluster: raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.path(dirSnaps), 2, n.hclog())
	if err != nil {
		ln.Close()
		store.Close()
		return fmt.Errorf("cluster: snapshots: %w", err)
	}
	trans := raft.NewNetworkTransportWithLogger(&streamLayer{m}, 3, 10*time.Second, n.hclog())
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(id.name)
	cfg.Logger = n.hclog()
	cfg.SnapshotThreshold = 64
	cfg.TrailingLogs = 256
	cfg.SnapshotInterval = 30 * time.Second
	n.mu.Lock()
	n.id, n.mux, n.store, n.trans = id, m, store, trans
	n.stop = make(chan struct{})
	n.mu.Unlock()
	go m.serve()
	if bootstrap {
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: cfg.LocalID, Address: raft.ServerAddress(n.opts.Address.String())}}}
		if err := raft.BootstrapCluster(cfg, store, store, snaps, trans, conf); err != nil {
			n.halt()
			return fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(cfg, n.fsm, store, store, snaps, trans)
	if err != nil {
		n.halt()
		return fmt.Errorf("cluster: raft: %w", err)
	}
	n.mu.Lock()
	n.raft = r
	n.mu.Unlock()
	n.loops.Add(2)
	go n.installLoop()
	go n.leaderLoop()
	n.log.Info("cluster node up", "node", id.name, "role", id.role, "address", n.opts.Address.String())
	return nil
}

// Close stops the node (Raft, the port, the loops); its state stays.
func (n *Node) Close() error {
	n.mu.Lock()
	r := n.raft
	n.signalStop()
	n.mu.Unlock()
	if r != nil {
		r.Shutdown().Error()
	}
	n.halt()
	return nil
}

// signalStop tells the loops and the dials in flight that the node stops;
// n.mu is held.
func (n *Node) signalStop() {
	if n.stop != nil {
		select {
		case <-n.stop:
		default:
			close(n.stop)
		}
	}
}

// stopping is closed when the running node stops.
func (n *Node) stopping() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stop
}

func (n *Node) halt() {
	n.mu.Lock()
	n.signalStop()
	m, store, trans := n.mux, n.store, n.trans
	n.mu.Unlock()
	if trans != nil {
		trans.Close()
	}
	if m != nil {
		m.close()
	}
	n.loops.Wait()
	if store != nil {
		store.Close()
	}
	n.mu.Lock()
	n.raft, n.mux, n.store, n.trans = nil, nil, nil, nil
	n.mu.Unlock()
}

// hclog routes Raft's own log (warnings and errors) into the node's.
func (n *Node) hclog() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: raftLog{n.log}, DisableTime: true})
}

// raftLog turns hclog's lines ("[WARN]  raft: message: k=v") into ours.
type raftLog struct{ log *slog.Logger }

func (w raftLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.HasPrefix(line, "[ERROR]") {
		level = slog.LevelError
	}
	if i := strings.Index(line, "]"); i >= 0 && strings.HasPrefix(line, "[") {
		line = strings.TrimSpace(line[i+1:])
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

func (n *Node) r() (*raft.Raft, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.raft == nil {
		return nil, errors.New("this node is not in a cluster: run `gatehouse cluster init` on the first backend, `gatehouse cluster join` on the others")
	}
	return n.raft, nil
}

// Init makes this node the first backend of a new cluster: its CA, the
// cluster key, its certificate; the running config's shared part becomes
// version 1.
func (n *Node) Init(author string) error {
	if n.Joined() {
		return errors.New("this node is already in a cluster")
	}
	if n.opts.Role != config.RoleBackend {
		return errors.New("a cluster starts on a backend (cluster.role: backend)")
	}
	shared, err := n.opts.Local.Shared()
	if err != nil {
		return err
	}
	caCert, caKey, err := newCA()
	if err != nil {
		return err
	}
	keyPEM, pub, err := newNodeKey()
	if err != nil {
		return err
	}
	cert, err := signNode(caCert, caKey, pub, n.opts.Name, n.opts.Role)
	if err != nil {
		return err
	}
	ring := make([]byte, keySize)
	rand.Read(ring)
	if err := n.saveIdentity(cert, keyPEM, caCert, caKey, ring); err != nil {
		return err
	}
	if err := n.start(true); err != nil {
		return err
	}
	r, _ := n.r()
	select {
	case <-waitLeader(r, 30*time.Second):
	}
	if r.State() != raft.Leader {
		return errors.New("cluster: this node did not become the leader of its new cluster")
	}
	id := n.identity()
	if _, err := n.apply(&command{Op: "member", Member: &Member{Name: id.name, Role: id.role, Address: n.opts.Address.String(), Fingerprint: id.fp, Joined: n.now()}}); err != nil {
		return err
	}
	_, err = n.apply(&command{Op: "config", Version: newVersion(shared, nil, author, n.now())})
	return err
}

func waitLeader(r *raft.Raft, limit time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(limit)
		for time.Now().Before(deadline) {
			if r.State() == raft.Leader {
				return
			}
			select {
			case <-r.LeaderCh():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return done
}

func newVersion(shared []byte, files map[string][]byte, author string, now time.Time) *Version {
	return &Version{Hash: hashOf(shared), Author: author, Time: now.UTC(), Doc: shared, Files: files}
}

func (n *Node) saveIdentity(cert, key, ca, caKey, ring []byte) error {
	for _, f := range []struct {
		name string
		data []byte
	}{{fileKeyring, ring}, {fileCA, ca}, {fileCAKey, caKey}, {fileKey, key}, {fileCert, cert}} { // the certificate last: it marks a member
		if f.data == nil {
			continue
		}
		if err := safeio.WriteFile(n.path(f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	return nil
}

// apply commits a command through this node, which must lead.
func (n *Node) apply(c *command) (any, error) {
	r, err := n.r()
	if err != nil {
		return nil, err
	}
	if c.Now.IsZero() {
		c.Now = n.now()
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	f := r.Apply(n.fsm.seal.seal(b), 10*time.Second)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, errNotLeader
		}
		return nil, fmt.Errorf("cluster: commit: %w", err)
	}
	// The followers learn that an entry is committed from the next
	// AppendEntries, which Raft sends after up to twice its commit timeout
	// when nothing else is appended. A barrier entry carries the news at
	// once: every node installs a new config without that wait.
	r.Barrier(0)
	if err, ok := f.Response().(error); ok {
		return nil, err
	}
	return f.Response(), nil
}

var errNotLeader = errors.New("not the leader")

// Token makes a one-time join token, good for ttl. The token names the
// cluster's CA, so that the joining node knows it talks to the right
// cluster before it sends anything.
func (n *Node) Token(ttl time.Duration) (string, error) {
	id := n.identity()
	if id == nil {
		return "", errors.New("this node is not in a cluster")
	}
	tid, secret := randHex(8), randHex(16)
	req := &Request{Op: "token", Token: tid + "." + secret, TTL: ttl}
	if _, err := n.leaderDo(req); err != nil {
		return "", err
	}
	return strings.Join([]string{"GH1", tid, secret, fingerprint(id.ca.Raw)}, "."), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Join makes this node a member of the cluster whose backend is at addr
// (IP or IP:PORT), with a token from `gatehouse cluster token`.
func (n *Node) Join(addr, token string) error {
	if n.Joined() {
		return errors.New("this node is already in a cluster")
	}
	f := strings.Split(strings.TrimSpace(token), ".")
	if len(f) != 4 || f[0] != "GH1" || len(f[3]) != 64 {
		return errors.New("not a join token (they look like GH1.xxxx.xxxx.xxxx; make one with `gatehouse cluster token` on a backend)")
	}
	ap, err := config.ParseClusterAddress(addr)
	if err != nil {
		return err
	}
	keyPEM, pub, err := newNodeKey()
	if err != nil {
		return err
	}
	pin := f[3]
	resp, err := n.call(ap.String(), &Request{Op: "join", Token: f[1] + "." + f[2], Name: n.opts.Name, Role: n.opts.Role,
		Address: n.opts.Address.String(), Time: n.now(), PubKey: pub}, &pin)
	if err != nil {
		return fmt.Errorf("join refused: %w", err)
	}
	if err := n.saveIdentity(resp.Cert, keyPEM, resp.CACert, resp.CAKey, resp.ClusterKey); err != nil {
		return err
	}
	return n.start(false)
}

// Request is a call from one node to another over the cluster port.
type Request struct {
	Op      string        `json:"op"` // join | token | propose | confirm | remove | status | report
	Token   string        `json:"token,omitempty"`
	Name    string        `json:"name,omitempty"`
	Role    string        `json:"role,omitempty"`
	Address string        `json:"address,omitempty"`
	Time    time.Time     `json:"time,omitzero"`
	PubKey  []byte        `json:"pub_key,omitempty"`
	TTL     time.Duration `json:"ttl,omitempty"`
	Version *Version      `json:"version,omitempty"`
	Within  time.Duration `json:"within,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error      string                `json:"error,omitempty"`
	Cert       []byte                `json:"cert,omitempty"`
	CACert     []byte                `json:"ca_cert,omitempty"`
	CAKey      []byte                `json:"ca_key,omitempty"`
	ClusterKey []byte                `json:"cluster_key,omitempty"`
	Seq        uint64                `json:"seq,omitempty"`
	Status     *status.Cluster       `json:"status,omitempty"`
	Report     *status.ClusterReport `json:"report,omitempty"`
}

// serveCall answers a call on the cluster port; peer is nil for a node
// without a certificate, which may only join.
func (n *Node) serveCall(peer *peerInfo, req *Request) *Response {
	fail := func(err error) *Response { return &Response{Error: err.Error()} }
	switch {
	case req.Op == "join":
	case peer == nil:
		return fail(errors.New("a certificate of this cluster is required"))
	case req.Op == "report":
		rep := n.report()
		return &Response{Report: &rep}
	case peer.role != config.RoleBackend && req.Op != "status":
		return fail(fmt.Errorf("%s is a frontend: it cannot change the cluster", peer.name))
	}
	resp, err := n.leaderDo(req)
	if err != nil {
		return fail(err)
	}
	return resp
}

// leaderDo carries out a request on the leader: here, or forwarded.
func (n *Node) leaderDo(req *Request) (*Response, error) {
	r, err := n.r()
	if err != nil {
		return nil, err
	}
	if r.State() != raft.Leader {
		addr, _ := r.LeaderWithID()
		// Just after an election the leader may not be known yet.
		for wait := time.Now().Add(3 * time.Second); addr == "" && r.State() != raft.Leader && time.Now().Before(wait); {
			time.Sleep(50 * time.Millisecond)
			addr, _ = r.LeaderWithID()
		}
		if r.State() == raft.Leader {
			return n.lead(req)
		}
		if addr == "" {
			return nil, errors.New("the cluster has no leader now (a majority of the backends is unreachable); see `gatehouse cluster recover` in the README")
		}
		return n.call(string(addr), req, nil)
	}
	resp, err := n.lead(req)
	if errors.Is(err, errNotLeader) {
		return nil, errors.New("the leader changed during the request: try again")
	}
	return resp, err
}

// lead carries out a request as the leader.
func (n *Node) lead(req *Request) (*Response, error) {
	switch req.Op {
	case "join":
		return n.admit(req)
	case "token":
		tid, secret, _ := strings.Cut(req.Token, ".")
		ttl := req.TTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		_, err := n.apply(&command{Op: "token", Token: &Token{ID: tid, SecretHash: secretHash(secret), Expires: n.now().Add(ttl)}})
		return &Response{}, err
	case "propose":
		res, err := n.apply(&command{Op: "config", Version: req.Version, Within: req.Within})
		if err != nil {
			return nil, err
		}
		return &Response{Seq: res.(uint64)}, nil
	case "confirm":
		res, err := n.apply(&command{Op: "confirm"})
		if err != nil {
			return nil, err
		}
		return &Response{Seq: res.(uint64)}, nil
	case "remove":
		return &Response{}, n.remove(req.Name)
	case "status":
		st := n.clusterStatus()
		return &Response{Status: &st}, nil
	}
	return nil, fmt.Errorf("unknown call %q", req.Op)
}

// admit lets a node in: its clock first (a refused join spends no
// token), then its token, then its certificate and its place in Raft.
func (n *Node) admit(req *Request) (*Response, error) {
	if off := req.Time.Sub(n.now()); off > n.opts.MaxClockOffset || -off > n.opts.MaxClockOffset {
		return nil, fmt.Errorf("clock differs from the leader's by %s (limit %s): fix NTP first", off.Round(time.Second), n.opts.MaxClockOffset)
	}
	if req.Role != config.RoleBackend && req.Role != config.RoleFrontend {
		return nil, fmt.Errorf("unknown role %q", req.Role)
	}
	if !config.ValidNodeName(req.Name) {
		return nil, fmt.Errorf("%q is not a node name", req.Name)
	}
	if _, err := netip.ParseAddrPort(req.Address); err != nil {
		return nil, fmt.Errorf("address %q: %w", req.Address, err)
	}
	st, _ := n.fsm.view()
	if m, ok := st.Members[req.Name]; ok && m.Address != req.Address {
		return nil, fmt.Errorf("a node named %s is already a member (at %s): remove it first, or choose another name", req.Name, m.Address)
	}
	tid, secret, _ := strings.Cut(req.Token, ".")
	if _, err := n.apply(&command{Op: "token-use", Token: &Token{ID: tid}, Secret: secret}); err != nil {
		return nil, err
	}
	read := func(name string) []byte {
		b, _ := os.ReadFile(n.path(name))
		return b
	}
	caCert, caKey, ring := read(fileCA), read(fileCAKey), read(fileKeyring)
	cert, err := signNode(caCert, caKey, req.PubKey, req.Name, req.Role)
	if err != nil {
		return nil, err
	}
	leaf, _ := parseCert(cert)
	if _, err := n.apply(&command{Op: "member", Member: &Member{Name: req.Name, Role: req.Role, Address: req.Address, Fingerprint: fingerprint(leaf.Raw), Joined: n.now()}}); err != nil {
		return nil, err
	}
	r, _ := n.r()
	add := r.AddNonvoter
	if req.Role == config.RoleBackend {
		add = r.AddVoter
	}
	if err := add(raft.ServerID(req.Name), raft.ServerAddress(req.Address), 0, 10*time.Second).Error(); err != nil {
		return nil, fmt.Errorf("add %s to raft: %w", req.Name, err)
	}
	n.log.Info("node joined", "node", req.Name, "role", req.Role, "address", req.Address)
	return &Response{Cert: cert, CACert: caCert, CAKey: caKey, ClusterKey: ring}, nil
}

// remove takes a node out of Raft and out of the membership: its
// certificate is refused from now on.
func (n *Node) remove(name string) error {
	r, _ := n.r()
	if name == n.identity().name {
		// The leader is leaving: another backend takes over and
		// removes it.
		if err := r.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("hand the leadership over before leaving: %w", err)
		}
		_, err := n.leaderDo(&Request{Op: "remove", Name: name})
		return err
	}
	if err := r.RemoveServer(raft.ServerID(name), 0, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("remove %s from raft: %w", name, err)
	}
	_, err := n.apply(&command{Op: "remove", Name: name})
	n.mu.Lock()
	delete(n.reports, name)
	n.mu.Unlock()
	return err
}

// Propose applies a new shared config cluster-wide, through the leader,
// and waits until this node runs it.
func (n *Node) Propose(shared []byte, files map[string][]byte, author string, within time.Duration) (uint64, error) {
	if _, err := splitTop(shared); err != nil {
		return 0, err
	}
	v := newVersion(shared, files, author, n.now())
	resp, err := n.leaderDo(&Request{Op: "propose", Version: v, Within: within})
	if err != nil {
		return 0, err
	}
	return resp.Seq, n.waitApplied(resp.Seq, false, 30*time.Second)
}

// Confirm confirms the pending apply cluster-wide.
func (n *Node) Confirm() error {
	resp, err := n.leaderDo(&Request{Op: "confirm"})
	if err != nil {
		return err
	}
	return n.waitApplied(resp.Seq, true, 30*time.Second)
}

// RemoveNode takes a node out of the cluster.
func (n *Node) RemoveNode(name string) error {
	_, err := n.leaderDo(&Request{Op: "remove", Name: name})
	return err
}

// waitApplied waits until this node runs version seq or a later one
// (confirmed: and has confirmed it here).
func (n *Node) waitApplied(seq uint64, confirmed bool, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		n.mu.Lock()
		a := n.applied
		n.mu.Unlock()
		if a.seq >= seq && !(confirmed && a.pending) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("version %d is committed but this node does not run it yet: %s", seq, a.err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Recover makes this node the cluster's only voter, for when a majority
// of the backends is gone for good; the frontends stay.
func (n *Node) Recover() error {
	id := n.identity()
	if id == nil {
		return errors.New("this node is not in a cluster")
	}
	r, _ := n.r()
	var keep []raft.Server
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.ID != raft.ServerID(id.name) && s.Suffrage == raft.Nonvoter {
				keep = append(keep, s)
			}
		}
	}
	n.Close()
	conf := raft.Configuration{Servers: append([]raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id.name), Address: raft.ServerAddress(n.opts.Address.String())}}, keep...)}
	seal, err := newSealer(mustRead(n.path(fileKeyring)))
	if err != nil {
		return err
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: n.path(fileRaft)})
	if err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.path(dirSnaps), 2, n.hclog())
	if err != nil {
		store.Close()
		return err
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(id.name)
	cfg.Logger = n.hclog()
	_, trans := raft.NewInmemTransport("")
	err = raft.RecoverCluster(cfg, newFSM(seal), store, store, snaps, trans, conf)
	store.Close()
	if err != nil {
		return fmt.Errorf("cluster: recover: %w", err)
	}
	n.log.Warn("cluster recovered: this node is the only voter", "node", id.name)
	if err := n.start(false); err != nil {
		return err
	}
	r, _ = n.r()
	<-waitLeader(r, 30*time.Second)
	if r.State() != raft.Leader {
		return errors.New("cluster: recovered, but this node did not become the leader")
	}
	return nil
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// installLoop runs the cluster's config here whenever it changes, and
// confirms or rolls back as the cluster does.
func (n *Node) installLoop() {
	defer n.loops.Done()
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		st, changed := n.fsm.view()
		n.converge(&st)
		select {
		case <-changed:
		case <-retry.C:
		case <-n.stop:
			return
		}
	}
}

// installGrace is how much longer than the cluster a node waits for a
// confirmation before rolling back by itself: a node the new config cut
// off from the cluster comes back on its own.
const installGrace = 30 * time.Second

func (n *Node) converge(st *state) {
	if st.Config == nil {
		return
	}
	shared, err := n.opts.Local.Shared()
	if err != nil {
		n.setApplied(appliedState{err: err.Error()})
		return
	}
	hash := hashOf(shared)
	pending := st.Pending != nil && st.Pending.Seq == st.Config.Seq
	n.mu.Lock()
	a := n.applied
	n.mu.Unlock()
	switch {
	case hash != st.Config.Hash:
		within := time.Duration(0)
		if pending {
			within = time.Until(st.Pending.Deadline) + installGrace
		}
		if err := n.opts.Local.Install(st.Config, within); err != nil {
			if err.Error() != a.err { // retried every few seconds: said once
				n.log.Error("install the cluster's config", "version", st.Config.Seq, "err", err)
			}
			n.setApplied(appliedState{seq: a.seq, hash: a.hash, err: err.Error()})
			return
		}
		n.log.Info("cluster config installed", "version", st.Config.Seq, "hash", st.Config.Hash[:12], "by", st.Config.Author)
		n.setApplied(appliedState{seq: st.Config.Seq, hash: st.Config.Hash, pending: within > 0})
	case a.pending && !pending:
		if err := n.opts.Local.Confirm(); err != nil {
			n.log.Warn("confirm the cluster's config here", "err", err)
		}
		n.setApplied(appliedState{seq: st.Config.Seq, hash: hash})
	default:
		n.setApplied(appliedState{seq: st.Config.Seq, hash: hash, pending: a.pending})
	}
}

func (n *Node) setApplied(a appliedState) {
	n.mu.Lock()
	changed := n.applied != a
	n.applied = a
	n.mu.Unlock()
	if changed && n.opts.Changed != nil {
		select {
		case n.opts.Changed <- struct{}{}:
		default:
		}
	}
}

// leaderLoop, while this node leads: rolls back an apply not confirmed in
// time, and asks every node how it is.
func (n *Node) leaderLoop() {
	defer n.loops.Done()
	tick := time.NewTicker(n.opts.ReportInterval)
	defer tick.Stop()
	for {
		r, err := n.r()
		if err != nil {
			return
		}
		if r.State() == raft.Leader {
			st, _ := n.fsm.view()
			if p := st.Pending; p != nil && !n.now().Before(p.Deadline) {
				if _, err := n.apply(&command{Op: "rollback", Seq: p.Seq}); err != nil {
					n.log.Warn("roll back the unconfirmed config", "err", err)
				} else {
					n.log.Warn("applied config rolled back on every node: not confirmed in time", "version", p.Seq)
				}
			}
			n.poll(&st)
		}
		select {
		case <-tick.C:
		case <-n.stop:
			return
		}
	}
}

// poll asks every member for its report, at once, each bounded by the
// report interval.
func (n *Node) poll(st *state) {
	var wg sync.WaitGroup
	self := n.identity().name
	for name, m := range st.Members {
		if name == self {
			rep := n.report()
			n.record(name, rep, time.Now(), 0)
			continue
		}
		wg.Add(1)
		go func(name, addr string) {
			defer wg.Done()
			sent := time.Now()
			resp, err := n.callWithin(addr, &Request{Op: "report"}, nil, n.opts.ReportInterval, n.opts.ReportInterval)
			if err != nil || resp.Report == nil {
				return
			}
			got := time.Now()
			mid := sent.Add(got.Sub(sent) / 2)
			n.record(name, *resp.Report, got, resp.Report.Time.Sub(mid))
		}(name, m.Address)
	}
	wg.Wait()
}

func (n *Node) record(name string, rep status.ClusterReport, at time.Time, offset time.Duration) {
	n.mu.Lock()
	n.reports[name] = seen{report: rep, at: at, offset: offset}
	n.mu.Unlock()
}

// report is this node's answer to the leader.
func (n *Node) report() status.ClusterReport {
	rep := n.opts.Local.Report()
	id := n.identity()
	n.mu.Lock()
	a := n.applied
	n.mu.Unlock()
	rep.Node, rep.Role, rep.Time, rep.Version = id.name, id.role, n.now(), n.opts.Version
	rep.AppliedVersion, rep.AppliedHash, rep.InstallError = a.seq, a.hash, a.err
	return rep
}

// Status is `gatehouse cluster status` as this node answers it: the
// leader's view when a backend can reach it, else its own.
func (n *Node) Status() status.Cluster {
	r, err := n.r()
	if err != nil {
		return status.Cluster{Node: n.opts.Name, Role: n.opts.Role, RaftState: "not joined", Note: err.Error()}
	}
	if r.State() == raft.Leader {
		return n.clusterStatus()
	}
	id := n.identity()
	if id.role == config.RoleBackend && n.voter() {
		// The leader's view, fetched at most once per half report
		// interval: SNMP and NRPE may ask often.
		n.mu.Lock()
		cached, at := n.leaderView, n.leaderViewAt
		n.mu.Unlock()
		if cached != nil && time.Since(at) < n.opts.ReportInterval/2 {
			return *cached
		}
		if resp, err := n.leaderDo(&Request{Op: "status"}); err == nil && resp.Status != nil {
			resp.Status.Node, resp.Status.Role, resp.Status.RaftState = id.name, id.role, r.State().String()
			n.mu.Lock()
			n.leaderView, n.leaderViewAt = resp.Status, time.Now()
			n.mu.Unlock()
			return *resp.Status
		} else if err != nil {
			st := n.localStatus()
			st.Note = "the leader's view is not available: " + err.Error()
			return st
		}
	}
	st := n.localStatus()
	st.Note = "a frontend sees only itself; the leader last contacted it " + lastContact(r)
	return st
}

func lastContact(r *raft.Raft) string {
	t := r.LastContact()
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Millisecond).String() + " ago"
}

func (n *Node) voter() bool {
	r, err := n.r()
	if err != nil {
		return false
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(n.identity().name) {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// header fills what every view shows.
func (n *Node) header() status.Cluster {
	r, _ := n.r()
	id := n.identity()
	st, _ := n.fsm.view()
	_, leader := r.LeaderWithID()
	out := status.Cluster{Node: id.name, Role: id.role, RaftState: r.State().String(), Leader: string(leader), From: id.name}
	if t, err := parseUint(r.Stats()["term"]); err == nil {
		out.Term = t
	}
	if v := st.Config; v != nil {
		out.Config = status.ClusterVersion{Version: v.Seq, Hash: v.Hash, Author: v.Author, Time: v.Time}
	}
	if p := st.Pending; p != nil {
		out.Pending = &status.ClusterPending{Version: p.Seq, Deadline: p.Deadline}
		if p.Previous != nil {
			out.Pending.Previous = p.Previous.Seq
		}
	}
	return out
}

func parseUint(s string) (uint64, error) {
	var v uint64
	_, err := fmt.Sscan(s, &v)
	return v, err
}

// localStatus is this node alone.
func (n *Node) localStatus() status.Cluster {
	out := n.header()
	rep := n.report()
	out.Nodes = []status.ClusterMember{n.member(out, &Member{Name: rep.Node, Role: rep.Role, Address: n.opts.Address.String()}, &seen{report: rep, at: time.Now()}, n.voter())}
	return out
}

// clusterStatus is the leader's view of every member.
func (n *Node) clusterStatus() status.Cluster {
	out := n.header()
	st, _ := n.fsm.view()
	voters := map[string]bool{}
	r, _ := n.r()
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			voters[string(s.ID)] = s.Suffrage == raft.Voter
		}
	}
	names := make([]string, 0, len(st.Members))
	for name := range st.Members {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		n.mu.Lock()
		s, ok := n.reports[name]
		n.mu.Unlock()
		var sp *seen
		if ok {
			sp = &s
		}
		out.Nodes = append(out.Nodes, n.member(out, st.Members[name], sp, voters[name]))
	}
	return out
}

func (n *Node) member(c status.Cluster, m *Member, s *seen, voter bool) status.ClusterMember {
	cm := status.ClusterMember{Name: m.Name, Role: m.Role, Address: m.Address, Voter: voter, AgeS: -1, Problems: []string{}}
	if s == nil {
		cm.Problems = append(cm.Problems, "unreachable")
		return cm
	}
	age := time.Since(s.at)
	cm.AgeS = age.Seconds()
	cm.Reachable = age <= n.opts.StaleAfter
	rep := s.report
	cm.AppliedVersion, cm.AppliedHash, cm.Version, cm.Queue = rep.AppliedVersion, rep.AppliedHash, rep.Version, rep.Queue
	cm.NTPOffset, cm.Services, cm.InstallError, cm.CollectorFailing = rep.NTPOffset, rep.Services, rep.InstallError, rep.CollectorFailed
	cm.ClockOffsetMS = float64(s.offset.Microseconds()) / 1000
	if !cm.Reachable {
		cm.Problems = append(cm.Problems, "unreachable")
	}
	if rep.AppliedHash != c.Config.Hash {
		cm.Problems = append(cm.Problems, "config lags")
	}
	if s.offset > n.opts.MaxClockOffset || -s.offset > n.opts.MaxClockOffset {
		cm.Problems = append(cm.Problems, "clock off")
	}
	return cm
}

// NodeStatus is this node's line in `gatehouse status`.
func (n *Node) NodeStatus() status.ClusterNode {
	out := status.ClusterNode{Node: n.opts.Name, Role: n.opts.Role}
	r, err := n.r()
	if err != nil {
		return out
	}
	id := n.identity()
	st, _ := n.fsm.view()
	_, leader := r.LeaderWithID()
	n.mu.Lock()
	a := n.applied
	n.mu.Unlock()
	out = status.ClusterNode{Node: id.name, Role: id.role, Joined: true, RaftState: r.State().String(), Voter: n.voter(),
		Leader: string(leader), AppliedVersion: a.seq, AppliedHash: a.hash, LastError: a.err}
	if st.Config != nil {
		out.Version, out.Hash = st.Config.Seq, st.Config.Hash
	}
	return out
}
