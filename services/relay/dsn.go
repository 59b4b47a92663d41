package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
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

// dsnFullMax bounds the message a DSN returns whole when the sender asked
// for it (RET=FULL): Postfix's bounce_size_limit. A larger one is
// returned as its header, and the DSN says why.
const dsnFullMax = 50000

// original reads back what a DSN about env returns: the whole message
// when full and it fits in dsnFullMax, else its header (truncated says the
// message was too large). Nothing, when the queue file cannot be read.
func (s *Service) original(env *queue.Envelope, full bool) (msg, header []byte, truncated bool) {
	f, err := s.store.Open(env)
	if err != nil {
		return nil, nil, false
	}
	defer f.Close()
	if full && env.OutSize() <= dsnFullMax {
		if b, err := io.ReadAll(io.LimitReader(f, dsnFullMax+1)); err == nil && len(b) <= dsnFullMax {
			return b, nil, false
		}
		return nil, nil, false
	}
	if _, raw, err := mailmsg.ReadHeader(bufio.NewReader(f), maxHeader); err == nil {
		header = quoteForDSN(raw)
	}
	return nil, header, full
}

// diagnostic is the Diagnostic-Code of a recipient's last error (RFC
// 3464 2.3.6): the next hop's reply as type smtp, or the relay's own
// words (a connection that failed, no SMTPUTF8 at the next hop, the
// queue's lifetime) as type X-Gatehouse, as Postfix writes X-Postfix.
// The enhanced status the queue keeps in front is the Status field's.
func diagnostic(lastErr string) string {
	if lastErr == "" {
		return ""
	}
	text := lastErr
	if st, rest, ok := strings.Cut(lastErr, " "); ok && len(st) >= 5 && st[1] == '.' && (st[0] == '4' || st[0] == '5') {
		text = rest
	}
	if len(text) >= 3 && text[0] >= '2' && text[0] <= '5' && isDigit(text[1]) && isDigit(text[2]) && (len(text) == 3 || text[3] == ' ' || text[3] == '-') {
		return "smtp; " + text
	}
	return "X-Gatehouse; " + text
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// notice queues a DSN to the sender of a message (RFC 3464): failures,
// delays, and successes the next hop will not report ("relayed", RFC
// 3461 4.1). Which recipients the sender wants to hear of (NOTIFY) the
// queue has decided; RET, ENVID and ORCPT are honoured here, and mail
// that came with SMTPUTF8 gets the internationalised report (RFC 6533).
func (s *Service) notice(n queue.Notice) error {
	c := s.config()
	pol := s.policy()
	failed := false
	for _, i := range n.Rcpts {
		failed = failed || !n.Delayed && n.State.Rcpts[i].Status == queue.Failed
	}
	// RET=FULL asks for the message with a failure report; delays and
	// successes quote the header only (RFC 3461 4.3).
	orig, header, truncated := s.original(&n.Envelope, failed && n.Envelope.Ret == "FULL")
	w, err := s.store.Create()
	if err != nil {
		return err
	}
	defer w.Abort()
	d := mailmsg.DSN{ReportingMTA: c.Hostname, From: "MAILER-DAEMON@" + c.Hostname, To: n.Envelope.From,
		Arrival: n.Envelope.Arrived, EnvelopeID: n.Envelope.EnvID, QueueID: n.Envelope.ID,
		OriginalHeader: header, Original: orig, OriginalTruncated: truncated, Global: n.Envelope.SMTPUTF8,
		Date: time.Now(), MessageID: "dsn." + w.ID() + "@" + c.Hostname}
	kinds := map[string]bool{}
	for _, i := range n.Rcpts {
		rs := n.State.Rcpts[i]
		action, status := "failed", "5.0.0"
		switch {
		case n.Delayed:
			action, status = "delayed", "4.0.0"
		case rs.Status == queue.Sent:
			action, status = "relayed", "2.0.0"
		}
		kinds[action] = true
		if f := strings.Fields(rs.LastError); len(f) > 0 && len(f[0]) >= 5 && (f[0][0] == '4' || f[0][0] == '5') && f[0][1] == '.' {
			status = f[0]
			if !n.Delayed && status[0] == '4' {
				status = "5" + status[1:] // given up: a permanent failure now
			}
		}
		diag := diagnostic(rs.LastError)
		remote := ""
		if rs.RemoteMTA != "" {
			remote = "dns; " + rs.RemoteMTA
		}
		r := n.Envelope.Rcpts[i]
		d.Recipients = append(d.Recipients, mailmsg.DSNRecipient{Address: r.Addr, Original: r.ORCPT, Action: action,
			Status: status, Diagnostic: diag, RemoteMTA: remote, LastAttempt: rs.LastTry})
	}
	msg := d.Bytes()
	if _, err := w.Write(msg); err != nil {
		return err
	}
	to, err := mailmsg.ParseAddress(n.Envelope.From)
	if err != nil {
		return fmt.Errorf("DSN to unparseable sender %q: %w", n.Envelope.From, err)
	}
	env := &queue.Envelope{From: "", Rcpts: []queue.Rcpt{{Addr: to.String(), Route: pol.RouteFor(to)}}, Arrived: time.Now(), DSN: true, Source: "dsn",
		SMTPUTF8: d.Global, UTF8Header: d.Global && !mailmsg.HeaderIsASCII(msg)}
	if err := w.Commit(env); err != nil {
		return err
	}
	s.q.Add(*env)
	kind := "bounce"
	switch {
	case kinds["failed"]:
	case n.Delayed:
		kind = "delay warning"
	case kinds["relayed"]:
		kind = "success (relayed)"
	}
	s.log.Info("DSN queued", "kind", kind, "id", env.ID, "about", n.Envelope.ID, "to", env.Rcpts[0].Addr, "ret", n.Envelope.Ret, "envid", n.Envelope.EnvID)
	return nil
}
