package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"time"

	"gatehouse/mailmsg"
	"gatehouse/queue"
)

// maxHeader bounds the original header a DSN reads back from the queue
// (what it quotes is bounded further, see dsnQuoteMax).
const maxHeader = 1 << 20

// dsnQuoteMax bounds the original header a DSN quotes: whoever made the
// message chose its header, and a DSN may go to a forged sender.
const dsnQuoteMax = 16 << 10

// quoteForDSN is the original header cut, at a line end, to dsnQuoteMax.
func quoteForDSN(raw []byte) []byte {
	if len(raw) <= dsnQuoteMax {
		return raw
	}
	cut := bytes.LastIndexByte(raw[:dsnQuoteMax], '\n')
	return raw[:cut+1]
}

// notice queues a DSN to the sender of a message (RFC 3464).
func (s *Service) notice(n queue.Notice) error {
	c := s.config()
	pol := s.policy()
	var orig []byte
	if f, err := s.store.Open(&n.Envelope); err == nil {
		if _, raw, err := mailmsg.ReadHeader(bufio.NewReader(f), maxHeader); err == nil {
			orig = quoteForDSN(raw)
		}
		f.Close()
	}
	w, err := s.store.Create()
	if err != nil {
		return err
	}
	defer w.Abort()
	d := mailmsg.DSN{ReportingMTA: c.Hostname, From: "MAILER-DAEMON@" + c.Hostname, To: n.Envelope.From,
		Arrival: n.Envelope.Arrived, EnvelopeID: n.Envelope.ID, OriginalHeader: orig, Date: time.Now(),
		MessageID: "dsn." + w.ID() + "@" + c.Hostname}
	for _, i := range n.Rcpts {
		rs := n.State.Rcpts[i]
		action, status := "failed", "5.0.0"
		if n.Delayed {
			action, status = "delayed", "4.0.0"
		}
		if f := strings.Fields(rs.LastError); len(f) > 0 && len(f[0]) >= 5 && (f[0][0] == '4' || f[0][0] == '5') && f[0][1] == '.' {
			status = f[0]
			if !n.Delayed && status[0] == '4' {
				status = "5" + status[1:] // given up: a permanent failure now
			}
		}
		diag := ""
		if rs.LastError != "" {
			diag = "smtp; " + rs.LastError
		}
		remote := ""
		if rs.RemoteMTA != "" {
			remote = "dns; " + rs.RemoteMTA
		}
		d.Recipients = append(d.Recipients, mailmsg.DSNRecipient{Address: n.Envelope.Rcpts[i].Addr, Action: action,
			Status: status, Diagnostic: diag, RemoteMTA: remote, LastAttempt: rs.LastTry})
	}
	if _, err := w.Write(d.Bytes()); err != nil {
		return err
	}
	to, err := mailmsg.ParseAddress(n.Envelope.From)
	if err != nil {
		return fmt.Errorf("DSN to unparseable sender %q: %w", n.Envelope.From, err)
	}
	env := &queue.Envelope{From: "", Rcpts: []queue.Rcpt{{Addr: to.String(), Route: pol.RouteFor(to)}}, Arrived: time.Now(), DSN: true, Source: "dsn"}
	if err := w.Commit(env); err != nil {
		return err
	}
	s.q.Add(*env)
	kind := "bounce"
	if n.Delayed {
		kind = "delay warning"
	}
	s.log.Info("DSN queued", "kind", kind, "id", env.ID, "about", n.Envelope.ID, "to", env.Rcpts[0].Addr)
	return nil
}
