package collector

import (
	"bytes"
	"context"
	"crypto/tls"
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

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapBatch is how many messages one UID FETCH asks for.
const imapBatch = 50

// idFolder is the folder of a collected IMAP id, FOLDER/UIDVALIDITY/UID.
// Folder names may hold "/" themselves (INBOX/Sub): cut from the end.
func idFolder(id string) string {
	rest, _, _ := cutLast(id, "/")     // UID
	folder, _, _ := cutLast(rest, "/") // UIDVALIDITY
	return folder
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// imapExpungeEvery is how many queued messages are flagged and expunged
// together: often enough that a folder shrinks as it is collected, rarely
// enough that the server's expunges (an index rewrite each) stay cheap.
const imapExpungeEvery = 500

// idleRenew re-issues IDLE before servers drop it (RFC 2177: 29 minutes).
const idleRenew = 28 * time.Minute

// imapCommitBytes is how much collected mail is held before it is
// committed to the queue, even in the middle of a batch: a batch of large
// messages is not held whole.
const imapCommitBytes = 8 << 20

// imapConn is the network side of an IMAP session (TLS runs over it).
// Every read has the idle deadline, so a server that goes silent ends the
// poll with an error instead of holding the poller forever; the collector
// lifts it while it is busy itself (committing to the queue) and lengthens
// it in IDLE, where silence is the rule. go-imap's own read deadlines are
// not used: they bound a whole response (30 s) or a whole literal (5 min,
// short for a large message on a slow link), and nothing between
// responses.
type imapConn struct {
	net.Conn
	mu   sync.Mutex
	idle time.Duration // 0: no deadline
}

func (c *imapConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	idle := c.idle
	c.Conn.SetReadDeadline(deadline(idle)) // under the lock: setIdle may be moving it
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the server was silent for %v: %w", idle, err)
	}
	return n, err
}

func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// SetReadDeadline ignores go-imap's deadlines: Read sets its own.
func (c *imapConn) SetReadDeadline(time.Time) error { return nil }

func (c *imapConn) SetDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(t) }

// setIdle changes the idle timeout, for a read under way too.
func (c *imapConn) setIdle(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = d
	c.Conn.SetReadDeadline(deadline(d))
}

// lineGuard refuses a line longer than max octets in the session's plain
// text: go-imap holds a response line in memory while it parses it, and
// only a message (bounded by the size limit) may have a line that long.
// go-imap shows the plain text only to its debug writer, which sees what
// is read and, as a write fails, makes the read fail. Our own commands
// pass through it too, short lines that end as they should.
type lineGuard struct {
	mu  sync.Mutex
	run int64 // octets since the last line end
	max int64
}

func (g *lineGuard) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		g.run = int64(len(p) - 1 - i)
	} else {
		g.run += int64(len(p))
	}
	if g.run > g.max {
		return 0, fmt.Errorf("the server sent a line longer than %d octets", g.max)
	}
	return len(p), nil
}

// busy runs f, local work during which the server may be silent as long
// as it likes, and restores the idle timeout after.
func (c *imapConn) busy(f func() error) error {
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	c.setIdle(0)
	defer c.setIdle(idle)
	return f()
}

// abandon ends the session in the middle of a FETCH the collector stops
// reading. go-imap waits for each literal to be read to its end before it
// reads on, and Close waits for it; reading on would mean reading all of a
// literal that may be endless. On the closed connection the rest fails at
// once, which releases go-imap.
func (c *imapConn) abandon(cmd *imapclient.FetchCommand) {
	c.Conn.Close()
	cmd.Close()
}

// pollIMAP collects every folder of an account. Remote ids are
// "folder/UIDVALIDITY/UID". With idle, it then waits in IDLE on the first
// folder and collects as soon as the server announces new mail; it returns
// only on an error or when ctx ends (or a forced poll).
func (c *Collector) pollIMAP(ctx context.Context, a *account, log *slog.Logger) error {
	cfg := a.cfg
	cr, err := c.credentials(cfg)
	if err != nil {
		return err
	}
	tc, err := c.tlsConfig(cfg)
	if err != nil {
		return err
	}
	newMail := make(chan struct{}, 1)
	limit := c.settings().MaxSize
	opts := &imapclient.Options{TLSConfig: tc, DebugWriter: &lineGuard{max: limit + 64<<10},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case newMail <- struct{}{}:
				default:
				}
			}
		}}}
	addr := net.JoinHostPort(cfg.Server, strconv.Itoa(cfg.Port))
	d := net.Dialer{Timeout: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	ic := &imapConn{Conn: raw, idle: c.ioTimeout}
	var cl *imapclient.Client
	if cfg.Protocol == "imaps" {
		tc.NextProtos = []string{"imap"}
		tconn := tls.Client(ic, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		cl = imapclient.New(tconn, opts)
	} else {
		// The password never crosses the network in clear.
		if cl, err = imapclient.NewStartTLS(ic, opts); err != nil {
			return err
		}
	}
	defer cl.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			cl.Close()
		case <-done:
		}
	}()
	if err := loginIMAP(ctx, cl, cfg, cr); err != nil {
		return err
	}
	folders := cfg.Folders
	if len(folders) == 0 {
		folders = []string{"INBOX"}
	}
	rechecked := false
	for {
		var left int // what the first folder still holds by design (kept, too large)
		for i, f := range folders {
			n, err := c.collectFolder(ctx, cl, ic, a, f, log)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if i == 0 {
				left = n
			}
		}
		if !cfg.Idle {
			return cl.Logout().Wait()
		}
		// Wait in IDLE on the first folder for new mail. Mail that came
		// in after the collection's listing and before this SELECT is
		// announced by nobody: collect it first.
		sel, err := cl.Select(folders[0], nil).Wait()
		if err != nil {
			return err
		}
		if int(sel.NumMessages) > left && !rechecked {
			rechecked = true // once: a count that never settles must not spin
			continue
		}
		rechecked = false
		// In IDLE the server is silent until there is news: the idle
		// timeout covers the time until the renewal and the answer to it.
		ic.setIdle(idleRenew + c.ioTimeout)
		idle, err := cl.Idle()
		if err != nil {
			return err
		}
		t := time.NewTimer(idleRenew)
		select {
		case <-newMail:
		case <-t.C:
		case <-a.now:
		case <-ctx.Done():
		}
		t.Stop()
		if err := idle.Close(); err != nil {
			return err
		}
		if err := idle.Wait(); err != nil {
			return err
		}
		ic.setIdle(c.ioTimeout)
		if ctx.Err() != nil {
			return nil
		}
		a.mu.Lock()
		a.st.LastPoll, a.st.LastOK = time.Now(), time.Now()
		a.mu.Unlock()
	}
}

// collectFolder collects one folder and returns how many messages it left
// there (kept, or too large).
func (c *Collector) collectFolder(ctx context.Context, cl *imapclient.Client, ic *imapConn, a *account, folder string, log *slog.Logger) (int, error) {
	cfg := a.cfg
	sel, err := cl.Select(folder, nil).Wait()
	if err != nil {
		return 0, err
	}
	prefix := fmt.Sprintf("%s/%d/", folder, sel.UIDValidity)
	seen, err := c.sink.Seen(cfg.Name)
	if err != nil {
		return 0, err
	}
	stale := 0
	for k := range seen {
		if idFolder(k) == folder && !strings.HasPrefix(k, prefix) {
			stale++
		}
	}
	if stale > 0 {
		if cfg.Keep {
			// The server renumbered the folder: the kept messages can no
			// longer be told from new ones. Collecting them all again
			// would duplicate them; stop and say so.
			return 0, fmt.Errorf("UIDVALIDITY changed to %d: %d kept messages can no longer be recognised; "+
				"to collect the folder again from scratch, remove /data/queue/fetched/%s", sel.UIDValidity, stale, cfg.Name)
		}
		log.Warn("UIDVALIDITY changed; ids of messages collected but not yet expunged no longer apply", "folder", folder, "stale", stale)
	}
	var uids []imap.UID
	if sel.NumMessages > 0 {
		sd, err := cl.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			return 0, err
		}
		uids = sd.AllUIDs()
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	present := map[string]bool{}
	var want []imap.UID
	var del imap.UIDSet
	for _, u := range uids {
		key := prefix + strconv.FormatUint(uint64(u), 10)
		present[key] = true
		if seen[key] {
			del.AddNum(u)
		} else {
			want = append(want, u)
		}
	}
	for key := range a.oversize {
		if idFolder(key) == folder && !present[key] {
			delete(a.oversize, key)
		}
	}
	limit := c.settings().MaxSize
	var tooLarge []string
	var collected, deleted int64
	// Only what is safely queued is flagged and expunged: with UIDPLUS
	// every imapExpungeEvery messages, so the folder shrinks as it is
	// collected; without it (EXPUNGE takes every \Deleted message) once
	// at the end.
	expunge := func() error {
		if cfg.Keep || len(del) == 0 {
			return nil
		}
		if err := cl.Store(del, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return err
		}
		var err error
		if cl.Caps().Has(imap.CapUIDPlus) {
			err = cl.UIDExpunge(del).Close()
		} else {
			err = cl.Expunge().Close()
		}
		if err != nil {
			return err
		}
		if n, ok := del.Nums(); ok {
			deleted += int64(len(n))
		}
		del = nil
		return nil
	}
	// Queued messages are recorded as collected, and expunged later.
	commit := func(got []imap.UID, bodies [][]byte) error {
		keys := make([]string, len(got))
		for i, u := range got {
			keys[i] = prefix + strconv.FormatUint(uint64(u), 10)
		}
		if err := ic.busy(func() error { return c.commitMany(cfg, keys, bodies, log) }); err != nil {
			return err
		}
		collected += int64(len(keys))
		for _, u := range got {
			del.AddNum(u)
		}
		return nil
	}
	for len(want) > 0 {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		batch := want[:min(imapBatch, len(want))]
		want = want[len(batch):]
		// Sizes first: a message too large is left on the server
		// without being downloaded.
		sizes, err := fetchSizes(cl, ic, batch)
		if err != nil {
			return 0, err
		}
		var small []imap.UID
		for _, u := range batch {
			size, ok := sizes[u]
			key := prefix + strconv.FormatUint(uint64(u), 10)
			switch {
			case !ok: // gone since the search
			case size > limit || a.oversize[key]:
				tooLarge = append(tooLarge, key)
			default:
				small = append(small, u)
			}
		}
		if len(small) == 0 {
			continue
		}
		var tl *bodyTooLarge
		if err := fetchBodies(cl, ic, small, limit, commit); errors.As(err, &tl) {
			// Larger than the server said: the session ends here, the
			// body unread; the next poll leaves it on the server.
			a.oversize[prefix+strconv.FormatUint(uint64(tl.uid), 10)] = true
			return 0, fmt.Errorf("UID %d: the server sends %d octets, more than smtp.limits.message_size (%d), "+
				"though RFC822.SIZE said %d: left on the server", tl.uid, tl.size, limit, sizes[tl.uid])
		} else if err != nil {
			return 0, err
		}
		if n, _ := del.Nums(); len(n) >= imapExpungeEvery && cl.Caps().Has(imap.CapUIDPlus) {
			if err := expunge(); err != nil {
				return 0, err
			}
		}
	}
	if err := expunge(); err != nil {
		return 0, err
	}
	// Only this folder's ids are judged by this folder's listing; the
	// other folders' stay. Kept: those the server still lists; deleted:
	// none of those expunged (all the rest of this folder's went before).
	if cfg.Keep || deleted > 0 || stale > 0 {
		c.sink.Forget(cfg.Name, func(id string) bool {
			return idFolder(id) != folder || cfg.Keep && present[id]
		})
	}
	a.mu.Lock()
	a.st.Collected += collected
	a.st.Deleted += deleted
	a.st.OnServer = len(uids) - int(deleted)
	a.st.TooLarge = tooLarge
	a.mu.Unlock()
	if collected > 0 || deleted > 0 {
		log.Info("polled", "folder", folder, "collected", collected, "deleted", deleted, "left_on_server", len(uids)-int(deleted))
	}
	return len(uids) - int(deleted), nil
}

// fetchSizes asks the sizes of messages; those the server no longer has
// are missing from the answer, those it gives no size for are -1. A
// message body in the answer, which was not asked for, ends the session:
// skipping it would mean reading it.
func fetchSizes(cl *imapclient.Client, ic *imapConn, uids []imap.UID) (map[imap.UID]int64, error) {
	cmd := cl.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, RFC822Size: true})
	done := false
	defer func() {
		if !done {
			ic.abandon(cmd)
		}
	}()
	sizes := map[imap.UID]int64{}
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var uid imap.UID
		size := int64(-1)
		for it := m.Next(); it != nil; it = m.Next() {
			switch it := it.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataRFC822Size:
				size = it.Size
			case imapclient.FetchItemDataBodySection, imapclient.FetchItemDataBinarySection:
				return nil, errors.New("the server sent a message body that was not asked for")
			}
		}
		if uid != 0 {
			sizes[uid] = size
		}
	}
	done = true
	return sizes, cmd.Close()
}

// bodyTooLarge is a message body larger than the limit, left unread.
type bodyTooLarge struct {
	uid  imap.UID
	size int64
}

func (e *bodyTooLarge) Error() string {
	return fmt.Sprintf("UID %d: body of %d octets, larger than the limit", e.uid, e.size)
}

// fetchBodies streams the bodies of messages, each read from its literal
// up to limit octets, and hands them to commit in UID order, in chunks of
// about imapCommitBytes. A body larger than limit is not read: the
// session ends with a bodyTooLarge.
func fetchBodies(cl *imapclient.Client, ic *imapConn, uids []imap.UID, limit int64, commit func(got []imap.UID, bodies [][]byte) error) error {
	section := &imap.FetchItemBodySection{Peek: true}
	cmd := cl.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
	done := false
	defer func() {
		if !done {
			ic.abandon(cmd)
		}
	}()
	type msg struct {
		uid  imap.UID
		body []byte
	}
	var held []msg
	var heldBytes int64
	flush := func() error {
		if len(held) == 0 {
			return nil
		}
		sort.Slice(held, func(i, j int) bool { return held[i].uid < held[j].uid })
		got := make([]imap.UID, len(held))
		bodies := make([][]byte, len(held))
		for i, m := range held {
			got[i], bodies[i] = m.uid, m.body
		}
		held, heldBytes = nil, 0
		return commit(got, bodies)
	}
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var uid imap.UID
		var body []byte
		for it := m.Next(); it != nil; it = m.Next() {
			switch it := it.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil || !it.MatchCommand(section) {
					continue
				}
				if it.Literal.Size() > limit {
					return &bodyTooLarge{uid: uid, size: it.Literal.Size()}
				}
				b, err := io.ReadAll(io.LimitReader(it.Literal, limit+1))
				if err != nil {
					return err
				}
				if int64(len(b)) > limit { // the literal is its size; in case
					return &bodyTooLarge{uid: uid, size: it.Literal.Size()}
				}
				body = b
			}
		}
		if body == nil {
			return fmt.Errorf("server sent no body for UID %d", uid)
		}
		held = append(held, msg{uid, body})
		if heldBytes += int64(len(body)); heldBytes >= imapCommitBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	done = true
	if err := cmd.Close(); err != nil {
		return err
	}
	return flush()
}
