package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"gatehouse/control"
	"gatehouse/queue"
	"gatehouse/status"
)

// SocketName is the relay's control socket, next to PID 1's.
const SocketName = "smtp.sock"

// Request is one call on the relay's socket (`gatehouse queue ...`,
// `gatehouse smtp pop-auth ...`).
type Request struct {
	Verb string `json:"verb"` // list | show | flush | hold | release | delete | pop-auth | stats
	ID   string `json:"id,omitempty"`
	Addr string `json:"addr,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error   string        `json:"error,omitempty"`
	List    []queue.Info  `json:"list,omitempty"`
	Info    *queue.Info   `json:"info,omitempty"`
	Detail  *status.Relay `json:"detail,omitempty"`
	Flushed int           `json:"flushed,omitempty"`
}

// serveControl answers the relay's socket until ctx ends. It grants
// POP-before-SMTP relaying and deletes mail, so the same checks guard it as
// the appliance's own socket: mode 0600 in a directory of the relay's own,
// root callers only (control.ServeConn), bounded requests, and a panic in
// a request answered as an error.
func serveControl(ctx context.Context, path string, s *Service) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("smtp: control socket: %w", err)
	}
	ln, err := control.Listen(path)
	if err != nil {
		return fmt.Errorf("smtp: control socket: %w", err)
	}
	go func() { <-ctx.Done(); ln.Close() }()
	log := s.log.With("socket", path)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("smtp: control socket: %w", err)
		}
		go control.ServeConn(c, log, s.answer)
	}
}

func (s *Service) answer(req Request) Response {
	var r Response
	var err error
	switch req.Verb {
	case "list":
		r.List = s.q.List()
	case "show":
		var in queue.Info
		if in, err = s.q.Get(req.ID); err == nil {
			r.Info = &in
		}
	case "flush":
		r.Flushed = s.q.Flush()
		s.log.Info("queue flushed by operator", "messages", r.Flushed)
	case "hold":
		err = s.q.Hold(req.ID)
	case "release":
		err = s.q.Release(req.ID)
	case "delete":
		err = s.q.Delete(req.ID)
	case "pop-auth":
		var a netip.Addr
		if a, err = netip.ParseAddr(req.Addr); err == nil {
			s.pop.Add(a)
			s.log.Info("POP-before-SMTP: address authorised", "addr", a.String(), "window", s.config().PopBeforeSMTP.Window.Duration)
		}
	case "fetch-now":
		err = s.fetch.PollNow(req.ID)
	case "fetch-status":
		d := s.detail()
		r.Detail = &d
	case "stats":
		d := s.detail()
		r.Detail = &d
	default:
		err = fmt.Errorf("unknown verb %q", req.Verb)
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// Call sends one request to the relay's socket.
func Call(path string, req Request) (*Response, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("the relay is not running (no %s): %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, err
	}
	var r Response
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		return nil, err
	}
	if r.Error != "" {
		return &r, errors.New(r.Error)
	}
	return &r, nil
}
