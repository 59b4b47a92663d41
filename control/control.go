// Package control is the appliance's control socket: a Unix socket over
// which the CLI (and later the SSH shell and cluster peers) ask the running
// instance for its status and tell it what to do. One JSON request per
// connection, one JSON response.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"gatehouse/status"

	"golang.org/x/sys/unix"
)

// DefaultSocket is where PID 1 listens. Host mode listens in its state dir.
const DefaultSocket = "/run/gatehouse/control.sock"

// Request is one call.
type Request struct {
	Verb    string `json:"verb"`              // status | logs | reload | poweroff | reboot
	Service string `json:"service,omitempty"` // for logs
	Lines   int    `json:"lines,omitempty"`   // for logs; 0 means all kept
	File    string `json:"file,omitempty"`    // for apply: a config file on the appliance
	Within  string `json:"within,omitempty"`  // for apply: confirm within this duration; "0s": no rollback
}

// Response answers a Request.
type Response struct {
	Error  string   `json:"error,omitempty"`
	Status *Status  `json:"status,omitempty"`
	Lines  []string `json:"lines,omitempty"`
}

// Status is what the appliance reports about itself.
type Status struct {
	Version    string         `json:"version"`
	Hostname   string         `json:"hostname"`
	Mode       string         `json:"mode"` // pid1 | host | emergency
	StartedAt  time.Time      `json:"started_at"`
	UptimeS    float64        `json:"uptime_s"`
	Ready      bool           `json:"ready"`
	ReadyMS    int64          `json:"ready_ms,omitempty"`
	Config     string         `json:"config"`
	Warnings   []string       `json:"warnings,omitempty"`
	Data       Data           `json:"data"`
	Orphans    int64          `json:"orphans_reaped"`
	Services   []status.State `json:"services"`
	Conditions []string       `json:"conditions,omitempty"` // e.g. clock-synced
	Emergency  string         `json:"emergency,omitempty"`  // why PID 1 is in its emergency shell
}

// Data describes the persistent data disk.
type Data struct {
	Path     string `json:"path"` // /data, or the state directory in host mode
	Mounted  bool   `json:"mounted"`
	Device   string `json:"device,omitempty"`
	ReadOnly bool   `json:"read_only"`
	Problem  string `json:"problem,omitempty"`
}

// Backend is what the socket, the console and the SSH shell act on: the
// running appliance, or the emergency shell's reduced view of it.
type Backend interface {
	Status() Status
	Logs(service string, lines int) ([]string, error)
	Shutdown(action string) error // "poweroff" or "reboot"
	Reload() error                // read the config again; an invalid one changes nothing
	// Apply installs a new config; unless confirmWithin is 0, the previous
	// one comes back if Confirm does not follow in time.
	Apply(file string, confirmWithin time.Duration) error
	Confirm() error
}

// MaxRequest bounds one request on a control socket: a verb and a few
// names, never more than a few hundred bytes.
const MaxRequest = 64 << 10

// Listen makes the Unix socket at path, replacing a stale one, mode 0600.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	os.Remove(path) // a stale socket from a previous run
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: chmod %s: %w", path, err)
	}
	return l, nil
}

// Serve answers requests on a Unix socket at path until ctx ends. Only
// root may steer the appliance: the socket is mode 0600, and each caller's
// credentials are checked besides (see ServeConn).
func Serve(ctx context.Context, path string, b Backend, log *slog.Logger) error {
	log = log.With("subsystem", "control")
	l, err := Listen(path)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		go ServeConn(c, log, func(req Request) Response {
			if req.Verb == "poweroff" || req.Verb == "reboot" {
				log.Info("shutdown requested over control socket", "action", req.Verb)
			}
			return Answer(b, req)
		})
	}
}

// errorResponse is the answer of a refused or failed request; every
// socket's Response decodes it.
type errorResponse struct {
	Error string `json:"error"`
}

// ServeConn answers the one request on a connection to a control socket
// (the appliance's or a service's) and closes it. Only root, and the user
// this process runs as, may ask anything: the caller's credentials are
// those the kernel recorded when it connected (SO_PEERCRED), so a socket
// file whose mode was loosened, or that another user reached in the moment
// between bind and chmod, still lets no one else in. A request is at most
// MaxRequest bytes. A panic in answer is logged and
// answered as an error; the socket goes on serving.
func ServeConn[Req, Resp any](c net.Conn, log *slog.Logger, answer func(Req) Resp) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	reply := func(v any) {
		if err := json.NewEncoder(c).Encode(v); err != nil {
			log.Debug("answer not delivered", "err", err)
		}
	}
	cred, err := PeerCred(c)
	if err != nil {
		log.Error("caller unknown; refused", "err", err)
		reply(errorResponse{Error: "control: refused: " + err.Error()})
		return
	}
	if !mayControl(cred.Uid) {
		log.Warn("caller refused", "uid", cred.Uid, "pid", cred.Pid)
		reply(errorResponse{Error: fmt.Sprintf("control: refused: uid %d may not use this socket (only root may)", cred.Uid)})
		return
	}
	in := &io.LimitedReader{R: c, N: MaxRequest + 1}
	var req Req
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		if in.N <= 0 {
			log.Warn("request too large; refused", "uid", cred.Uid, "pid", cred.Pid)
			reply(errorResponse{Error: fmt.Sprintf("control: request larger than %d KiB; refused", MaxRequest>>10)})
			return
		}
		reply(errorResponse{Error: "bad request: " + err.Error()})
		return
	}
	var resp any
	func() {
		defer func() {
			if r := recover(); r != nil {
				log.Error("request panicked", "panic", fmt.Sprint(r), "request", fmt.Sprintf("%+v", req), "stack", string(debug.Stack()))
				resp = errorResponse{Error: fmt.Sprintf("internal error: %v", r)}
			}
		}()
		resp = answer(req)
	}()
	reply(resp)
}

// PeerCred returns the credentials of the process that connected c, as
// the kernel recorded them at connect(2).
func PeerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a Unix socket (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	return cred, nil
}

// mayControl says whether a caller of this uid may use a control socket:
// root, and the user this process runs as (on the appliance that is root
// for PID 1 and the relay's own user for the relay, which no one else runs
// as; in host mode without root, the user who started it).
func mayControl(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// Answer carries out one request against b.
func Answer(b Backend, req Request) Response {
	switch req.Verb {
	case "status":
		st := b.Status()
		return Response{Status: &st}
	case "logs":
		lines, err := b.Logs(req.Service, req.Lines)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Lines: lines}
	case "apply":
		within, err := time.ParseDuration(req.Within)
		if err != nil {
			return Response{Error: fmt.Sprintf("confirm within: %v", err)}
		}
		if err := b.Apply(req.File, within); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	case "confirm":
		if err := b.Confirm(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	case "reload":
		if err := b.Reload(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	case "poweroff", "reboot":
		if err := b.Shutdown(req.Verb); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	}
	return Response{Error: fmt.Sprintf("unknown verb %q", req.Verb)}
}

// Call sends one request to the socket at path.
func Call(path string, req Request) (*Response, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no gatehouse is running with control socket %s", path)
		}
		return nil, fmt.Errorf("control: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := json.NewEncoder(c).Encode(&req); err != nil {
		return nil, fmt.Errorf("control: send: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("control: read answer: %w", err)
	}
	if resp.Error != "" {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}

// Client is a Backend on the far side of the socket: what the SSH shell,
// a separate process, acts on.
type Client struct{ Socket string }

// Status implements Backend.
func (c Client) Status() Status {
	resp, err := Call(c.Socket, Request{Verb: "status"})
	if err != nil || resp.Status == nil {
		return Status{Mode: "unreachable", Emergency: fmt.Sprintf("control socket: %v", err)}
	}
	return *resp.Status
}

// Logs implements Backend.
func (c Client) Logs(service string, lines int) ([]string, error) {
	resp, err := Call(c.Socket, Request{Verb: "logs", Service: service, Lines: lines})
	if err != nil {
		return nil, err
	}
	return resp.Lines, nil
}

// Shutdown implements Backend.
func (c Client) Shutdown(action string) error {
	_, err := Call(c.Socket, Request{Verb: action})
	return err
}

// Reload implements Backend.
func (c Client) Reload() error {
	_, err := Call(c.Socket, Request{Verb: "reload"})
	return err
}

// Apply implements Backend.
func (c Client) Apply(file string, within time.Duration) error {
	_, err := Call(c.Socket, Request{Verb: "apply", File: file, Within: within.String()})
	return err
}

// Confirm implements Backend.
func (c Client) Confirm() error {
	_, err := Call(c.Socket, Request{Verb: "confirm"})
	return err
}
