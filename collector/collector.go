// Package collector empties remote mailboxes (POP3, IMAP) into the relay's
// queue, fetchmail-style, through a Sink the relay implements.
package collector

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gatehouse/collector/pop3"
	"gatehouse/config"
	"gatehouse/mailmsg"
	"gatehouse/queue"
	"gatehouse/status"
)

// The collector empties remote mailboxes into the queue, fetchmail-style,
// with none of fetchmail's ways to lose or duplicate mail:
//
//   - a message counts as collected when it is committed to the queue (file
//     and directory fsynced), and the record of that, the remote id in the
//     envelope, is committed with it in the same rename;
//   - only then is the remote copy deleted (DELE, committed by QUIT);
//   - a remote id already recorded is never collected again, only deleted.
//
// So a crash at any point leads to neither loss nor a second copy. Each
// account runs on its own, with its own backoff.
type Collector struct {
	sink     Sink
	settings func() Settings
	read     func(name string) ([]byte, error)
	tokens   func(name string, c *config.OAuth2) TokenSource
	log      *slog.Logger

	mu       sync.Mutex
	accounts map[string]*account
	wg       sync.WaitGroup

	// ioTimeout is the longest a server may be silent while the
	// collector waits for it (per read).
	ioTimeout time.Duration
}

// Sink is where collected mail goes: the relay's queue, routed by the
// relay's policy. A message is recorded as collected under its account
// and remote id (its de-duplication key) from the moment it is queued.
type Sink interface {
	// Route is the route of collected mail for rcpt.
	Route(rcpt mailmsg.Address) queue.Route
	// Queue commits msgs to the queue together and returns once every one
	// is on disk (queue.Queue.AddBatch); on an error none is queued.
	Queue(msgs []queue.Incoming) error
	// Seen returns the remote ids of an account's messages that were
	// collected: still queued, or recorded since (queue.Store.Seen).
	Seen(account string) (map[string]bool, error)
	// Forget forgets the recorded ids of an account that keep says no
	// to (queue.Store.PruneSeen).
	Forget(account string, keep func(id string) bool) error
}

// Settings are what the collector takes from the relay's running config.
type Settings struct {
	Hostname string         // named in the trace field of collected mail
	MaxSize  int64          // smtp.limits.message_size: larger messages stay on the server
	Roots    *x509.CertPool // trusted CAs, for accounts without a ca_file
}

// Options are what a Collector is built from.
type Options struct {
	Sink     Sink
	Settings func() Settings
	// ReadFile reads password and CA files (os.ReadFile when nil).
	ReadFile func(name string) ([]byte, error)
	// Tokens gives the token source of an account that logs in with
	// OAuth2, by name ("fetch:ACCOUNT"); the relay keeps them.
	Tokens func(name string, c *config.OAuth2) TokenSource
	Log    *slog.Logger
}

type account struct {
	mu     sync.Mutex
	cfg    config.FetchAccount
	st     status.FetchAccount
	now    chan struct{}
	cancel context.CancelFunc
	// oversize holds the remote ids of messages found larger than the
	// limit only while they were retrieved (the server announced them
	// smaller): they are left on the server like the others too large.
	// Only the account's poller uses it.
	oversize map[string]bool
}

// New returns a collector with no account.
func New(o Options) *Collector {
	read := o.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	return &Collector{sink: o.Sink, settings: o.Settings, read: read, tokens: o.Tokens, log: o.Log.With("part", "fetch"),
		accounts: map[string]*account{}, ioTimeout: 2 * time.Minute}
}

// Apply starts, restarts and stops account pollers to match the config;
// they run until ctx ends.
func (c *Collector) Apply(ctx context.Context, accounts []config.FetchAccount) {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := map[string]config.FetchAccount{}
	for _, a := range accounts {
		want[a.Name] = a
	}
	for name, a := range c.accounts {
		if w, ok := want[name]; !ok || !sameAccount(w, a.cfg) {
			a.cancel()
			delete(c.accounts, name)
		}
	}
	for name, cfg := range want {
		if c.accounts[name] != nil {
			continue
		}
		actx, cancel := context.WithCancel(ctx)
		a := &account{cfg: cfg, now: make(chan struct{}, 1), cancel: cancel, oversize: map[string]bool{},
			st: status.FetchAccount{Name: name, Protocol: cfg.Protocol, Server: net.JoinHostPort(cfg.Server, strconv.Itoa(cfg.Port))}}
		c.accounts[name] = a
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.run(actx, a)
		}()
	}
}

func sameAccount(a, b config.FetchAccount) bool {
	return fmt.Sprint(a) == fmt.Sprint(b) && *a.TLSVerify == *b.TLSVerify
}

// Wait returns when every poller has stopped (after Apply's ctx ends).
func (c *Collector) Wait() { c.wg.Wait() }

// PollNow asks one account, or all (""), to poll at once.
func (c *Collector) PollNow(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for an, a := range c.accounts {
		if name == "" || an == name {
			select {
			case a.now <- struct{}{}:
			default:
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("no fetch account %q", name)
	}
	return nil
}

// Accounts are the accounts' settings as the collector runs them.
func (c *Collector) Accounts() []config.FetchAccount {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []config.FetchAccount
	for _, a := range c.accounts {
		out = append(out, a.cfg)
	}
	return out
}

// Status is the accounts' state, by name.
func (c *Collector) Status() []status.FetchAccount {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []status.FetchAccount
	for _, a := range c.accounts {
		a.mu.Lock()
		out = append(out, a.st)
		a.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// run polls one account until ctx ends; failures back off from the poll
// interval up to an hour, and never hold up another account.
func (c *Collector) run(ctx context.Context, a *account) {
	log := c.log.With("account", a.cfg.Name)
	for {
		err := c.pollSafely(ctx, a, log)
		a.mu.Lock()
		a.st.LastPoll = time.Now()
		wait := a.cfg.Poll.Duration
		if err != nil {
			a.st.Failures++
			a.st.LastError = err.Error()
			for i := 1; i < a.st.Failures && wait < time.Hour; i++ {
				wait *= 2
			}
			wait = min(wait, max(time.Hour, a.cfg.Poll.Duration))
			log.Warn("poll failed", "err", err, "retry_in", wait)
		} else {
			a.st.Failures, a.st.LastError, a.st.LastOK = 0, "", time.Now()
		}
		a.st.NextPoll = time.Now().Add(wait)
		a.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.now:
		case <-t.C:
		}
		t.Stop()
	}
}

// pollSafely keeps a bug in one account's poll from taking the relay down.
func (c *Collector) pollSafely(ctx context.Context, a *account, log *slog.Logger) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
			log.Error("poll panicked", "err", r)
		}
	}()
	if strings.HasPrefix(a.cfg.Protocol, "imap") {
		return c.pollIMAP(ctx, a, log)
	}
	return c.pollPOP3(ctx, a, log)
}

func (c *Collector) tlsConfig(a config.FetchAccount) (*tls.Config, error) {
	tc := &tls.Config{ServerName: a.Server, MinVersion: tls.VersionTLS12, InsecureSkipVerify: !*a.TLSVerify}
	if a.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		b, err := c.read(a.CAFile)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ca_file %s holds no certificate", a.CAFile)
		}
		tc.RootCAs = pool
	} else {
		tc.RootCAs = c.settings().Roots
	}
	return tc, nil
}

// pop3SessionMessages is how many new messages one POP3 session collects
// before it QUITs, which commits its deletions, and the poll goes on in a
// new one: a large mailbox shrinks as it is collected, not at the end.
const pop3SessionMessages = 2000

func (c *Collector) pollPOP3(ctx context.Context, a *account, log *slog.Logger) error {
	for {
		more, err := c.pop3Session(ctx, a, log, pop3SessionMessages)
		if err != nil || !more {
			return err
		}
	}
}

// pop3Session collects up to maxNew new messages in one session; more
// says the mailbox holds further ones.
func (c *Collector) pop3Session(ctx context.Context, a *account, log *slog.Logger, maxNew int) (more bool, err error) {
	cfg := a.cfg
	cr, err := c.credentials(cfg)
	if err != nil {
		return false, err
	}
	tc, err := c.tlsConfig(cfg)
	if err != nil {
		return false, err
	}
	addr := net.JoinHostPort(cfg.Server, strconv.Itoa(cfg.Port))
	d := net.Dialer{Timeout: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer raw.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			raw.Close() // stop a poll in progress
		case <-done:
		}
	}()
	var conn net.Conn = raw
	if cfg.Protocol == "pop3s" {
		conn = tls.Client(raw, tc)
	}
	cl, err := pop3.NewClient(conn, c.ioTimeout)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	if cfg.Protocol == "pop3" {
		// The password never crosses the network in clear.
		if _, ok := cl.Capabilities()["STLS"]; !ok {
			return false, errors.New("the server does not offer STLS; refusing to send the password in clear (use pop3s)")
		}
		if err := cl.StartTLS(tc); err != nil {
			return false, err
		}
	}
	if err := loginPOP3(ctx, cl, cfg, cr); err != nil {
		return false, err
	}
	msgs, err := cl.List()
	if err != nil {
		return false, err
	}
	account := cfg.Name
	seen, err := c.sink.Seen(account)
	if err != nil {
		return false, err
	}
	limit := c.settings().MaxSize
	present := map[string]bool{}
	for _, m := range msgs {
		present[m.UID] = true
	}
	for uid := range a.oversize {
		if !present[uid] {
			delete(a.oversize, uid)
		}
	}
	deletedIDs := map[string]bool{}
	var tooLarge []string
	var collected, deleted int64
	// New messages go in batches: retrieved pipelined, committed together
	// (one directory fsync), then deleted; known ones are only deleted.
	var batches [][]pop3.Message
	var seenDele []int
	var batchBytes int64
	n := 0
	for _, m := range msgs {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		big := m.Size > limit || a.oversize[m.UID]
		if !seen[m.UID] && !big && n >= maxNew {
			more = true // the rest in the next session
			break
		}
		switch {
		case seen[m.UID]:
			if !cfg.Keep {
				seenDele = append(seenDele, m.Num)
				deletedIDs[m.UID] = true
			}
		case big:
			tooLarge = append(tooLarge, m.UID)
		default:
			if len(batches) == 0 || len(batches[len(batches)-1]) >= 32 || batchBytes >= 8<<20 {
				batches, batchBytes = append(batches, nil), 0
			}
			batches[len(batches)-1] = append(batches[len(batches)-1], m)
			batchBytes += m.Size
			n++
		}
	}
	// A batch's messages are deleted once they are in the queue; the known
	// ones go with the first.
	deleOf := func(k int, b []pop3.Message) []int {
		if cfg.Keep {
			return nil
		}
		var nums []int
		if k == 0 {
			nums = seenDele
		}
		for _, m := range b {
			nums = append(nums, m.Num)
			deletedIDs[m.UID] = true
		}
		return nums
	}
	if len(batches) == 0 {
		if len(seenDele) > 0 {
			if err := cl.DeleMany(seenDele); err != nil {
				return false, err
			}
			deleted += int64(len(seenDele))
		}
	} else if !cl.Pipelining() {
		for k, b := range batches {
			bodies, err := c.retrieve(a, b, limit, func(nums []int, to func(int) io.Writer) error { return cl.RetrMany(nums, to, limit) })
			if err != nil {
				return false, err
			}
			if err := c.commitBatch(a.cfg, b, bodies, log); err != nil {
				return false, err
			}
			collected += int64(len(b))
			if dele := deleOf(k, b); len(dele) > 0 {
				if err := cl.DeleMany(dele); err != nil {
					return false, err
				}
				deleted += int64(len(dele))
			}
		}
	} else {
		// Pipelined: the next batch's RETRs go out before this batch is
		// committed, so that the server sends while the disk syncs, and a
		// batch's DELEs go out only once it is committed, their answers
		// read after the next batch's messages.
		if err := cl.SendRetr(numsOf(batches[0])); err != nil {
			return false, err
		}
		var inflight []int // DELEs sent, answers not read
		for k, b := range batches {
			bodies, err := c.retrieve(a, b, limit, func(nums []int, to func(int) io.Writer) error { return cl.ReadRetr(nums, to, limit) })
			if err != nil {
				return false, err
			}
			if len(inflight) > 0 {
				if err := cl.ReadDele(inflight); err != nil {
					return false, err
				}
				deleted += int64(len(inflight))
				inflight = nil
			}
			if k+1 < len(batches) {
				if err := cl.SendRetr(numsOf(batches[k+1])); err != nil {
					return false, err
				}
			}
			if err := c.commitBatch(a.cfg, b, bodies, log); err != nil {
				return false, err
			}
			collected += int64(len(b))
			if dele := deleOf(k, b); len(dele) > 0 {
				if err := cl.SendDele(dele); err != nil {
					return false, err
				}
				inflight = dele
			}
		}
		if len(inflight) > 0 {
			if err := cl.ReadDele(inflight); err != nil {
				return false, err
			}
			deleted += int64(len(inflight))
		}
	}
	if err := cl.Quit(); err != nil {
		return false, err // deletions not confirmed: the ids stay recorded, retried next time
	}
	// Ids the server no longer has cannot return: forget them, and those
	// whose deletion the QUIT just committed.
	c.sink.Forget(account, func(id string) bool { return present[id] && !deletedIDs[id] })
	a.mu.Lock()
	a.st.Collected += collected
	a.st.Deleted += deleted
	a.st.OnServer = len(msgs) - int(deleted)
	a.st.TooLarge = tooLarge
	a.mu.Unlock()
	if len(tooLarge) > 0 {
		log.Warn("messages larger than smtp.limits.message_size left on the server", "count", len(tooLarge), "limit", limit)
	}
	if collected > 0 || deleted > 0 {
		log.Info("polled", "collected", collected, "deleted", deleted, "left_on_server", len(msgs)-int(deleted))
	}
	return more, nil
}

func numsOf(b []pop3.Message) []int {
	nums := make([]int, len(b))
	for i, m := range b {
		nums[i] = m.Num
	}
	return nums
}

// retrieve reads a batch's messages with read (RetrMany, or ReadRetr
// after SendRetr), each up to limit octets and no further.
func (c *Collector) retrieve(a *account, batch []pop3.Message, limit int64, read func(nums []int, to func(int) io.Writer) error) ([]bytes.Buffer, error) {
	bodies := make([]bytes.Buffer, len(batch))
	if err := read(numsOf(batch), func(i int) io.Writer { return &bodies[i] }); err != nil {
		var tl *pop3.TooLargeError
		if errors.As(err, &tl) {
			// The server announced less than it sends. The session is
			// out of step: end it; the next one leaves the message on
			// the server.
			for _, m := range batch {
				if m.Num == tl.Num {
					a.oversize[m.UID] = true
					return nil, fmt.Errorf("message %d (uid %s) is larger than smtp.limits.message_size (%d octets), "+
						"though LIST said %d: left on the server", m.Num, m.UID, limit, m.Size)
				}
			}
		}
		return nil, err // the connection is probably gone: nothing was committed
	}
	return bodies, nil
}

// commitBatch commits retrieved messages to the queue together; it
// returns only once the queue has them all on disk.
func (c *Collector) commitBatch(cfg config.FetchAccount, batch []pop3.Message, bodies []bytes.Buffer, log *slog.Logger) error {
	keys := make([]string, len(batch))
	raw := make([][]byte, len(batch))
	for i, m := range batch {
		keys[i], raw[i] = m.UID, bodies[i].Bytes()
	}
	return c.commitMany(cfg, keys, raw, log)
}

// commitMany queues collected messages, each with the record of where it
// came from (the remote id travels in the same file), in one batch commit.
func (c *Collector) commitMany(cfg config.FetchAccount, uids []string, bodies [][]byte, log *slog.Logger) error {
	hostname := c.settings().Hostname
	to, _ := mailmsg.ParseAddress(cfg.DeliverTo)
	route := c.sink.Route(to)
	msgs := make([]queue.Incoming, len(uids))
	for i, uid := range uids {
		body := bodies[i]
		write := func(w io.Writer, id string) error {
			hdr := fmt.Sprintf("Received: from %s (%s)\r\n\tby %s (Gatehouse) with %s id %s\r\n\tfor <%s> (account %s, uid %s);\r\n\t%s\r\n",
				mailmsg.TraceWord(cfg.Server), mailmsg.TraceWord(cfg.User), hostname, strings.ToUpper(cfg.Protocol), id,
				mailmsg.TraceWord(cfg.DeliverTo), mailmsg.TraceWord(cfg.Name), mailmsg.TraceWord(uid), time.Now().Format(time.RFC1123Z))
			if _, err := io.WriteString(w, hdr); err != nil {
				return err
			}
			// Line ends as the listener's normalize mode leaves them,
			// whatever smtp.bare_newlines says (a collected message cannot
			// be refused to its sender): a bare CR or LF passed on is how
			// SMTP smuggling hides a second message for the internal server.
			g := mailmsg.NewNewlineGuard(bytes.NewReader(body), true)
			if _, err := io.Copy(w, g); err != nil {
				return err
			}
			if g.Found() {
				log.Info("bare <CR> or <LF> in a collected message changed to CRLF", "uid", uid)
			}
			return nil
		}
		from := returnPath(body)
		// An internationalised address in the envelope goes with SMTPUTF8
		// (RFC 6531), as it would have come by SMTP.
		utf8 := !isASCII(from) || !to.IsASCII()
		msgs[i] = queue.Incoming{Write: write, Envelope: &queue.Envelope{From: from,
			Rcpts: []queue.Rcpt{{Addr: to.String(), Route: route}}, Arrived: time.Now(), Source: "fetch:" + cfg.Name,
			Dedup: queue.Dedup{Set: cfg.Name, Key: uid}, SMTPUTF8: utf8, UTF8Header: utf8 && !mailmsg.HeaderIsASCII(body)}}
	}
	if err := c.sink.Queue(msgs); err != nil {
		return err
	}
	for _, m := range msgs {
		log.Debug("collected", "id", m.Envelope.ID, "size", m.Envelope.Size, "to", cfg.DeliverTo)
	}
	return nil
}

func isASCII(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 })
}

// maxHeader bounds the header read for a collected message's Return-Path.
const maxHeader = 1 << 20

// returnPath is the envelope sender for a collected message: its
// Return-Path, else none (the null sender: a bounce of it must not go to a
// guessed address).
func returnPath(msg []byte) string {
	h, _, err := mailmsg.ReadHeader(bufio.NewReader(bytes.NewReader(msg)), maxHeader)
	if err != nil {
		return ""
	}
	rp := strings.Trim(strings.TrimSpace(h.Get("Return-Path")), "<>")
	if a, err := mailmsg.ParseAddress(rp); err == nil {
		return a.String()
	}
	return ""
}
