// Package cluster is the cluster service: this appliance's node of the
// cluster (package gatehouse/cluster), the socket `gatehouse cluster`
// talks to, and the node's link to PID 1, which runs the config the
// cluster agrees on.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"gatehouse/cluster"
	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/safeio"
	"gatehouse/service"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// Options say where things are.
type Options struct {
	Config    string // the running config (PID 1's validated copy)
	Dir       string // the node's cluster state: /data/cluster
	DataDir   string // where replicated secret files may be written
	Socket    string
	Control   string // PID 1's control socket
	Version   string
	ClockSkew time.Duration // tests only
	Log       *slog.Logger
	Notify    *service.Notifier
	Reload    <-chan struct{}
}

// Run runs the node until ctx ends.
func Run(ctx context.Context, o Options) error {
	cfg, _, err := config.Load(o.Config)
	if err != nil {
		return err
	}
	k := cfg.Cluster
	if k == nil {
		return errors.New("cluster: the config has no cluster section")
	}
	addr, _ := k.AddrPort()
	local := &pid1{o: o}
	kick := make(chan struct{}, 1)
	node, err := cluster.Open(cluster.Options{Changed: kick, Dir: o.Dir, Name: k.Name, Role: k.Role, Address: addr,
		MaxClockOffset: k.MaxClockOffset.Duration, ReportInterval: k.ReportInterval.Duration, StaleAfter: k.StaleAfter.Duration,
		ClockSkew: o.ClockSkew, Version: o.Version, Local: local, Log: o.Log})
	if err != nil {
		return err
	}
	defer node.Close()
	s := &svc{o: o, node: node, name: k.Name, addr: k.Address}
	ln, err := sockrpc.Listen(o.Socket)
	if err != nil {
		return fmt.Errorf("cluster: socket: %w", err)
	}
	go sockrpc.NewServer(s.answer, o.Log.With("socket", o.Socket)).Serve(ctx, ln)
	return service.Run(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload, Kick: kick}, s)
}

type svc struct {
	o          Options
	node       *cluster.Node
	name, addr string // as the node started: a member cannot change them
}

// Reconcile reports the node's state every second; the node converges by
// itself on what the cluster commits.
func (s *svc) Reconcile(_ context.Context, cfg *config.Config) (time.Duration, error) {
	if k := cfg.Cluster; k == nil || k.Name != s.name || k.Address != s.addr {
		if s.node.Joined() {
			s.o.Log.Error("a member's cluster name and address stay as they joined: remove it from the cluster and join again to change them")
		} else {
			return 0, service.Restart(errors.New("cluster section changed"))
		}
	}
	return time.Second, nil
}

func (s *svc) Status() service.Status {
	ns := s.node.NodeStatus()
	sum := "not in a cluster: cluster init or cluster join"
	if ns.Joined {
		sum = fmt.Sprintf("%s %s, %s, leader %s, config v%d", ns.Role, ns.Node, strings.ToLower(ns.RaftState), ns.Leader, ns.AppliedVersion)
	}
	return service.Status{Ready: true, Summary: sum, Detail: ns}
}

// answer serves the socket.
func (s *svc) answer(req status.ClusterRequest) status.ClusterResponse {
	fail := func(err error) status.ClusterResponse { return status.ClusterResponse{Error: err.Error()} }
	n := s.node
	switch req.Verb {
	case "status":
		st := n.Status()
		return status.ClusterResponse{Status: &st}
	case "init":
		if err := n.Init(author("cluster init")); err != nil {
			return fail(err)
		}
		return s.running("cluster initialised; this node is its first backend")
	case "join":
		if err := n.Join(req.Address, req.Token); err != nil {
			return fail(err)
		}
		return s.running("joined the cluster")
	case "token":
		tok, err := n.Token(req.TTL)
		if err != nil {
			return fail(err)
		}
		return status.ClusterResponse{Token: tok}
	case "remove":
		if err := n.RemoveNode(req.Node); err != nil {
			return fail(err)
		}
		return status.ClusterResponse{Message: req.Node + " removed; its certificate is refused from now on"}
	case "recover":
		if err := n.Recover(); err != nil {
			return fail(err)
		}
		return status.ClusterResponse{Message: "this node is now the cluster's only voter and its leader; remove the lost backends (gatehouse cluster remove NAME) and join new ones"}
	case "propose", "confirm":
		if !n.Joined() {
			return status.ClusterResponse{NotJoined: true}
		}
		if ns := n.NodeStatus(); !ns.Voter {
			return fail(errors.New("this node is a cluster frontend: apply the config on a backend"))
		}
		if req.Verb == "confirm" {
			if err := n.Confirm(); err != nil {
				return fail(err)
			}
			return status.ClusterResponse{Message: "confirmed on every node"}
		}
		seq, err := s.propose(req)
		if err != nil {
			return fail(err)
		}
		return status.ClusterResponse{Version: seq}
	}
	return fail(fmt.Errorf("unknown verb %q", req.Verb))
}

// running answers a join or init once this node runs the cluster's config.
func (s *svc) running(msg string) status.ClusterResponse {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ns := s.node.NodeStatus()
		if ns.AppliedVersion > 0 && ns.AppliedHash == ns.Hash {
			return status.ClusterResponse{Version: ns.AppliedVersion, Message: fmt.Sprintf("%s; running config version %d", msg, ns.AppliedVersion)}
		}
		if time.Now().After(deadline) {
			return status.ClusterResponse{Message: msg + "; the cluster's config is not running here yet: see gatehouse cluster status", Error: ns.LastError}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// propose sends a config PID 1 has validated to the cluster: its shared
// part, with the secret files it names.
func (s *svc) propose(req status.ClusterRequest) (uint64, error) {
	doc, err := os.ReadFile(req.File)
	if err != nil {
		return 0, err
	}
	shared, err := cluster.SharedPart(doc)
	if err != nil {
		return 0, err
	}
	files := map[string][]byte{}
	for _, p := range cluster.SecretPaths(shared) {
		b, err := os.ReadFile(p)
		if err != nil {
			return 0, fmt.Errorf("the config names %s, which cannot be read to send to the cluster: %w", p, err)
		}
		files[p] = b
	}
	a := req.Author
	if a == "" {
		a = author("config apply")
	}
	return s.node.Propose(shared, files, a, req.Within)
}

func author(what string) string {
	host, _ := os.Hostname()
	who := "root"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	return fmt.Sprintf("%s@%s (%s)", who, host, what)
}

// pid1 is the node's link to PID 1.
type pid1 struct{ o Options }

func (p *pid1) Shared() ([]byte, error) {
	b, err := os.ReadFile(p.o.Config)
	if err != nil {
		return nil, err
	}
	return cluster.SharedPart(b)
}

// Install writes the secret files, then has PID 1 apply the cluster's
// sections beside this node's own.
func (p *pid1) Install(v *cluster.Version, within time.Duration) error {
	for path, data := range v.Files {
		if !inside(p.o.DataDir, path) {
			p.o.Log.Warn("a replicated secret file lies outside this node's data directory: not written", "file", path)
			continue
		}
		if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := safeio.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	local, err := os.ReadFile(p.o.Config)
	if err != nil {
		return err
	}
	merged, err := cluster.Merge(v.Doc, local)
	if err != nil {
		return err
	}
	file := filepath.Join(p.o.Dir, "incoming.yaml")
	if err := safeio.WriteFile(file, merged, 0o600); err != nil {
		return err
	}
	_, err = control.Call(p.o.Control, control.Request{Verb: "apply", File: file, Within: within.String(), Local: true})
	return err
}

func (p *pid1) Confirm() error {
	_, err := control.Call(p.o.Control, control.Request{Verb: "confirm", Local: true})
	return err
}

func (p *pid1) Report() status.ClusterReport {
	var rep status.ClusterReport
	resp, err := control.Call(p.o.Control, control.Request{Verb: "status"})
	if err != nil || resp.Status == nil {
		return rep
	}
	for _, s := range resp.Status.Services {
		rep.Services = append(rep.Services, status.ServiceLine{Name: s.Name, Phase: s.Phase, Restarts: s.Restarts})
	}
	if r, ok, _ := status.Detail[status.Relay](resp.Status.Services, "smtp"); ok {
		rep.Queue, rep.Collector = r.Queue.Depth, len(r.Fetch)
		for _, a := range r.Fetch {
			if a.LastError != "" {
				rep.CollectorFailed++
			}
		}
	}
	if t, ok, _ := status.Detail[status.NTP](resp.Status.Services, "ntp"); ok {
		rep.NTPOffset, rep.NTPSynced = t.Offset, t.Synced
	}
	return rep
}

// inside says whether path lies in dir.
func inside(dir, path string) bool {
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && dir != ""
}
