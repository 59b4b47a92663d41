package relay

import (
	"context"
	"fmt"
	"net/netip"

	"gatehouse/queue"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// serveControl answers the relay's socket until ctx ends. It grants
// POP-before-SMTP relaying and deletes mail, so the same checks guard it as
// the appliance's own socket (sockrpc): mode 0600 in a directory of the
// relay's own, callers checked, bounded requests, and a panic in a request
// answered as an error.
func serveControl(ctx context.Context, path string, s *Service) error {
	ln, err := sockrpc.Listen(path)
	if err != nil {
		return fmt.Errorf("smtp: control socket: %w", err)
	}
	if err := sockrpc.NewServer(s.answer, s.log.With("socket", path)).Serve(ctx, ln); err != nil {
		return fmt.Errorf("smtp: control socket: %w", err)
	}
	return nil
}

func (s *Service) answer(req status.RelayRequest) status.RelayResponse {
	var r status.RelayResponse
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
	case "oauth2-login":
		r.Login, err = s.tokens.startLogin(s.loginAccount(req.ID))
	case "oauth2-login-wait":
		r.Login, err = s.tokens.loginState(req.ID)
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
