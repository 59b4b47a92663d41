package smtp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
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

// pollIMAP collects every folder of an account. Remote ids are
// "folder/UIDVALIDITY/UID". With idle, it then waits in IDLE on the first
// folder and collects as soon as the server announces new mail; it returns
// only on an error or when ctx ends (or a forced poll).
func (c *collector) pollIMAP(ctx context.Context, a *account, log *slog.Logger) error {
	cfg := a.cfg
	pw, err := readConfigured(cfg.PasswordFile)
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	tc, err := c.tlsConfig(cfg)
	if err != nil {
		return err
	}
	newMail := make(chan struct{}, 1)
	opts := &imapclient.Options{TLSConfig: tc, Dialer: &net.Dialer{Timeout: 30 * time.Second},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case newMail <- struct{}{}:
				default:
				}
			}
		}}}
	addr := net.JoinHostPort(cfg.Server, strconv.Itoa(cfg.Port))
	var cl *imapclient.Client
	if cfg.Protocol == "imaps" {
		cl, err = imapclient.DialTLS(addr, opts)
	} else {
		// The password never crosses the network in clear.
		cl, err = imapclient.DialStartTLS(addr, opts)
	}
	if err != nil {
		return err
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
	if err := cl.Login(cfg.User, strings.TrimRight(string(pw), "\r\n")).Wait(); err != nil {
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
			n, err := c.collectFolder(ctx, cl, a, f, log)
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
func (c *collector) collectFolder(ctx context.Context, cl *imapclient.Client, a *account, folder string, log *slog.Logger) (int, error) {
	cfg := a.cfg
	sel, err := cl.Select(folder, nil).Wait()
	if err != nil {
		return 0, err
	}
	prefix := fmt.Sprintf("%s/%d/", folder, sel.UIDValidity)
	seen, err := c.svc.store.Fetched(cfg.Name)
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
	limit := c.svc.config().Limits.MessageSize.Bytes
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
	section := &imap.FetchItemBodySection{Peek: true}
	for len(want) > 0 {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		batch := want[:min(imapBatch, len(want))]
		want = want[len(batch):]
		msgs, err := cl.Fetch(imap.UIDSetNum(batch...), &imap.FetchOptions{UID: true, RFC822Size: true,
			BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return 0, err
		}
		sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
		var keys []string
		var bodies [][]byte
		var got []imap.UID
		for _, m := range msgs {
			key := prefix + strconv.FormatUint(uint64(m.UID), 10)
			body := m.FindBodySection(section)
			if m.RFC822Size > limit || int64(len(body)) > limit {
				tooLarge = append(tooLarge, key)
				continue
			}
			if body == nil {
				return 0, fmt.Errorf("server sent no body for UID %d", m.UID)
			}
			keys, bodies, got = append(keys, key), append(bodies, body), append(got, m.UID)
		}
		if len(keys) > 0 {
			if err := c.commitMany(cfg, keys, bodies, log); err != nil {
				return 0, err
			}
			collected += int64(len(keys))
			for _, u := range got {
				del.AddNum(u)
			}
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
		c.svc.store.PruneFetched(cfg.Name, func(id string) bool {
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
