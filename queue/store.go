// Package queue is the relay's durable mail queue: a message is on disk and
// fsynced, file and directory, before the relay says 250, and a crash at any
// moment neither loses an accepted message nor delivers a half-written one.
//
// Layout under the queue directory:
//
//	tmp/<id>    being received; removed at start-up (never acknowledged)
//	tmp/spare.<n>  the file of a message that left the queue, kept to be
//	            written over by a new one (see spares); removed at start-up
//	msg/<id>    accepted: the message data, then the envelope, then a trailer
//	state/<id>  per-recipient delivery state, replaced atomically; absent
//	            while nothing has been tried
//	corrupt/    files that failed their check at start-up, kept for a human
//	fetched/<set>  the de-duplication keys of a set (Envelope.Dedup) whose
//	            messages have left the queue, one a line, appended with
//	            an fsync
//
// A message exists once its rename into msg/ is on disk; it is gone once
// msg/<id> is unlinked. Everything else is derived from those two facts.
package queue

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/mailmsg"
	"gatehouse/safeio"
)

// trailerMagic ends every message file: the envelope's length then "GHQ1".
const trailerMagic = "GHQ1"

// maxEnvelope bounds the envelope a file may claim, so a damaged trailer
// cannot make start-up allocate gigabytes.
const maxEnvelope = 16 << 20

// Envelope is what the relay knows about a message besides its bytes.
type Envelope struct {
	ID      string    `json:"id"`
	From    string    `json:"from"` // "" is the null sender
	Rcpts   []Rcpt    `json:"rcpts"`
	Arrived time.Time `json:"arrived"`
	Size    int64     `json:"size"`             // bytes of message data
	Client  string    `json:"client,omitempty"` // address the message came from, for logs
	Login   string    `json:"login,omitempty"`  // authenticated user, if any
	DSN     bool      `json:"dsn,omitempty"`    // a bounce we generated: never bounce it again
	Source  string    `json:"source,omitempty"` // smtp, submission, fetch:<account>, dsn
	// Dedup marks a message taken from a mailbox rather than accepted from
	// its sender (the collector's), with the key that says it was taken.
	// While the message is queued this file is the record; when it leaves
	// the queue the key moves to fetched/<set>.
	Dedup Dedup `json:"fetch,omitzero"`
	// Prepend are header fields known only once the data was on disk
	// (Authentication-Results, Received-SPF, DKIM-Signature), with their
	// CRLFs: they go out in front of the data.
	Prepend string `json:"prepend,omitempty"`
	// Quarantine holds the message from the start (postsuper -h), for
	// this reason (a DMARC quarantine policy); `queue release` lets it go.
	Quarantine string `json:"quarantine,omitempty"`
	// SMTPUTF8 says the sender gave SMTPUTF8 (RFC 6531): the addresses
	// or the header may be UTF-8. UTF8Header says the header (what we
	// prepend included) does hold non-ASCII text, so that a next hop
	// without SMTPUTF8 cannot take the message (RFC 6531 3.7.5).
	SMTPUTF8   bool `json:"smtputf8,omitempty"`
	UTF8Header bool `json:"utf8_header,omitempty"`
	// Ret and EnvID are the DSN parameters of MAIL FROM (RFC 3461 4.3,
	// 4.4): "FULL" or "HDRS" (or "": the relay's choice, the header), and
	// the sender's own id of the message.
	Ret   string `json:"ret,omitempty"`
	EnvID string `json:"envid,omitempty"`
}

// Rcpt is one recipient and the route chosen for it when it was accepted.
type Rcpt struct {
	Addr  string `json:"addr"`
	Route Route  `json:"route"`
	// Notify and ORCPT are the DSN parameters of RCPT TO (RFC 3461 4.1,
	// 4.2): "NEVER" or some of "SUCCESS,FAILURE,DELAY" ("": not given),
	// and the original recipient, passed on and quoted in DSNs.
	Notify string           `json:"notify,omitempty"`
	ORCPT  mailmsg.OrigRcpt `json:"orcpt,omitzero"`
}

// Notify words of RFC 3461 4.1.
const (
	NotifySuccess = "SUCCESS"
	NotifyFailure = "FAILURE"
	NotifyDelay   = "DELAY"
)

// Wants says whether the sender asked to hear of an outcome (NotifySuccess,
// NotifyFailure, NotifyDelay) for r. A recipient without NOTIFY hears of
// failures, as before the extension (RFC 3461 4.1); delays then follow
// the relay's delay_warning.
func (r Rcpt) Wants(what string) bool {
	if r.Notify == "" {
		return what == NotifyFailure
	}
	for w := range strings.SplitSeq(r.Notify, ",") {
		if w == what {
			return true
		}
	}
	return false
}

// Status of one recipient.
const (
	Pending = ""
	Sent    = "sent"
	Failed  = "failed" // permanently; a DSN was or will be sent
)

// RcptState is the delivery state of one recipient.
type RcptState struct {
	Status    string    `json:"status,omitempty"`
	Attempts  int       `json:"attempts,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	LastTry   time.Time `json:"last_try,omitzero"`
	RemoteMTA string    `json:"remote_mta,omitempty"`
	Notified  bool      `json:"notified,omitempty"` // the sender has its DSN
	// Relayed: sent to a next hop that does not offer DSN, so a request
	// for success notification is still ours to answer ("relayed").
	Relayed bool `json:"relayed,omitempty"`
}

// State is the delivery state of a message.
type State struct {
	Rcpts    []RcptState `json:"rcpts"`
	NextTry  time.Time   `json:"next_try,omitzero"`
	Hold     bool        `json:"hold,omitempty"`
	Warned   bool        `json:"warned,omitempty"` // delay warning sent
	Attempts int         `json:"attempts,omitempty"`
}

// Store is the queue directory.
type Store struct {
	dir    string
	msgDir *os.File // kept open for group-committed fsyncs
	seq    atomic.Uint64
	prefix string

	commits chan chan error
	closed  chan struct{}
	once    sync.Once

	// spares are emptied files in tmp/ of messages that left the queue,
	// reused for new ones: creating an inode costs more than renaming one
	// (ext4 without a journal scans past every inode freed in the last
	// seconds, and a busy relay frees hundreds a second).
	smu      sync.Mutex
	spares   []spare // reusable: their removal from msg/ is on disk
	retired  []spare // not yet: waiting for the next fsync of msg/
	spareSeq uint64
	readers  map[string]int // messages open for reading, by id
	// withState are the messages that have a state file: the others need
	// no unlink of one when they leave.
	withState map[string]bool

	fmu         sync.Mutex
	dedupKeys   map[string]Dedup     // queue id -> Envelope.Dedup, for queued messages that carry one
	dedupLogged map[string]bool      // queue id -> its key is in the fetched/ log already
	fetchLogs   map[string]*fetchLog // set -> its fetched/ file
}

// fetchLog returns the set's log, made on first use.
func (s *Store) fetchLog(set string) *fetchLog {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.fetchLogs == nil {
		s.fetchLogs = map[string]*fetchLog{}
	}
	l := s.fetchLogs[set]
	if l == nil {
		l = &fetchLog{path: s.path("fetched", set)}
		s.fetchLogs[set] = l
	}
	return l
}

// OpenStore opens (creating if needed) the queue directory, removes
// unacknowledged partial files, and returns every queued message with its
// state. Files that fail their check are moved to corrupt/ and reported.
func OpenStore(dir string) (*Store, []Loaded, []error) {
	var problems []error
	for _, sub := range []string{"tmp", "msg", "state", "corrupt", "fetched"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, nil, []error{fmt.Errorf("queue: %w", err)}
		}
	}
	// Nothing in tmp/ was ever acknowledged: the 250 comes after the rename.
	if ents, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	md, err := os.Open(filepath.Join(dir, "msg"))
	if err != nil {
		return nil, nil, []error{fmt.Errorf("queue: %w", err)}
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	s := &Store{dir: dir, msgDir: md, prefix: strings.ToUpper(hex.EncodeToString(rnd[:])), commits: make(chan chan error, 256), closed: make(chan struct{}),
		dedupKeys: map[string]Dedup{}, dedupLogged: map[string]bool{}, withState: map[string]bool{}, readers: map[string]int{}}
	go s.committer()

	ents, err := md.ReadDir(-1)
	if err != nil {
		return nil, nil, []error{fmt.Errorf("queue: %w", err)}
	}
	var loaded []Loaded
	have := map[string]bool{}
	for _, e := range ents {
		id := e.Name()
		env, err := s.readEnvelope(id)
		if err != nil {
			problems = append(problems, fmt.Errorf("queue: message %s moved to corrupt/: %w", id, err))
			os.Rename(s.path("msg", id), s.path("corrupt", id))
			continue
		}
		st, err := s.readState(id, &env)
		if err != nil {
			problems = append(problems, fmt.Errorf("queue: message %s: state unreadable, retrying all recipients not known as sent: %w", id, err))
			st = State{Rcpts: make([]RcptState, len(env.Rcpts))}
		}
		have[id] = true
		s.withState[id] = true // may have one: an unlink too many is harmless
		if !env.Dedup.IsZero() {
			s.dedupKeys[id] = env.Dedup
		}
		loaded = append(loaded, Loaded{Envelope: env, State: st})
	}
	// State without a message: the message was delivered and removed
	// before its state was.
	if ents, err := os.ReadDir(filepath.Join(dir, "state")); err == nil {
		for _, e := range ents {
			if !have[e.Name()] {
				os.Remove(filepath.Join(dir, "state", e.Name()))
			}
		}
	}
	return s, loaded, problems
}

// Loaded is a message found at start-up.
type Loaded struct {
	Envelope Envelope
	State    State
}

// Close stops the committer.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.closed) })
	s.fmu.Lock()
	for _, l := range s.fetchLogs {
		l.exclusive(func() error { return nil })
	}
	s.fmu.Unlock()
	return s.msgDir.Close()
}

func (s *Store) path(sub, id string) string { return filepath.Join(s.dir, sub, id) }

// NewID returns a queue id: sortable by time, unique across restarts.
func (s *Store) NewID() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(time.Now().UnixMicro()))
	return strings.ToUpper(hex.EncodeToString(b[2:])) + s.prefix + fmt.Sprintf("%06X", s.seq.Add(1)&0xffffff)
}

// Writer receives one message into tmp/.
type Writer struct {
	s    *Store
	id   string
	path string // in tmp/: <id>, or a spare's name
	// oldSize is the size of the spare written over (0 for a new file):
	// what is left of its bytes past the new end is cut off before the
	// fsync.
	oldSize int64
	f       *os.File
	n       int64
	done    bool
}

// Create starts a message. Write its data, then Commit or Abort.
func (s *Store) Create() (*Writer, error) {
	id := s.NewID()
	if path, ok := s.spare(); ok {
		// Written over rather than emptied: blocks already allocated
		// are not freed and allocated again (mail sizes repeat).
		if f, err := openFile(path, unix.O_WRONLY, 0); err == nil {
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err == nil {
				return &Writer{s: s, id: id, path: path, f: f, oldSize: st.Size}, nil
			}
			f.Close()
		}
		os.Remove(path)
	}
	path := s.path("tmp", id)
	f, err := openFile(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return &Writer{s: s, id: id, path: path, f: f}, nil
}

// openFile is os.OpenFile for queue files, without the poller: a regular
// file cannot be polled, and os.OpenFile finds that out with four fcntl
// calls and a failing epoll_ctl on every message.
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	fd, err := unix.Open(path, flag|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// maxSpares bounds the files kept for reuse: about the number of messages
// received at once. Only files up to maxSpareSize are kept, so that spares
// never hold much of the disk the relay's free-space check counts.
const (
	maxSpares    = 256
	maxSpareSize = 256 << 10
)

type spare struct {
	path string
	size int64
}

// spare takes a file to reuse, if there is one.
func (s *Store) spare() (string, bool) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if len(s.spares) == 0 {
		return "", false
	}
	p := s.spares[len(s.spares)-1]
	s.spares = s.spares[:len(s.spares)-1]
	return p.path, true
}

// retire makes the file of message id, no longer a message, a spare: moved
// into tmp/ (from then on the message is gone, as by an unlink), to be
// written over by a later message. Not before the next fsync of msg/ that
// started after the rename: should the power fail first, msg/<id> may come
// back pointing at the file, and it must still hold that message, not the
// start of another's. Its bytes stay in tmp/ until then, as a deleted
// file's stay on the disk; tmp/ is the relay's alone (0700) and is
// cleared at start-up. A full pool, a large file or a file still open for
// reading is unlinked instead.
func (s *Store) retire(id string) error {
	path := s.path("msg", id)
	var st unix.Stat_t
	big := unix.Stat(path, &st) != nil || st.Size > maxSpareSize
	s.smu.Lock()
	// Open for reading (see Open): unlinked, so that the reader keeps
	// the old bytes and no new message is written into them.
	if big || len(s.spares)+len(s.retired) >= maxSpares || s.readers[id] > 0 {
		s.smu.Unlock()
		return unix.Unlink(path)
	}
	defer s.smu.Unlock()
	s.spareSeq++
	name := s.path("tmp", fmt.Sprintf("spare.%d", s.spareSeq))
	if err := unix.Rename(path, name); err != nil {
		return err
	}
	s.retired = append(s.retired, spare{name, st.Size})
	return nil
}

// ID is the queue id the message will have.
func (w *Writer) ID() string { return w.id }

// Size is the number of data bytes written so far.
func (w *Writer) Size() int64 { return w.n }

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}

// Commit makes the message durable: envelope and trailer written, file
// fsynced, renamed into msg/, directory fsynced (shared with concurrent
// commits). Only after Commit returns nil may the relay say 250.
func (w *Writer) Commit(env *Envelope) error {
	return w.s.CommitBatch([]*Writer{w}, []*Envelope{env})
}

// CommitBatch commits several messages at once (the collector's batches):
// their files are fsynced in parallel, which the file system folds into
// few journal commits, and one directory fsync covers every rename. On an
// error none of them is committed.
func (s *Store) CommitBatch(ws []*Writer, envs []*Envelope) error {
	fail := func(err error) error {
		for _, w := range ws {
			w.done = true
			w.abort()
			os.Remove(s.path("msg", w.id))
		}
		return err
	}
	for i, w := range ws {
		if w.done {
			return fail(errors.New("queue: message already committed or aborted"))
		}
		env := envs[i]
		env.ID, env.Size = w.id, w.n
		js, err := json.Marshal(env)
		if err != nil {
			return fail(fmt.Errorf("queue: %w", err))
		}
		var tr [8]byte
		binary.BigEndian.PutUint32(tr[:4], uint32(len(js)))
		copy(tr[4:], trailerMagic)
		if _, err := w.f.Write(append(js, tr[:]...)); err != nil {
			return fail(fmt.Errorf("queue: write %s: %w", w.id, err))
		}
		// Only when shorter: a truncate dirties the inode, which
		// fdatasync would then write too.
		if size := w.n + int64(len(js)+len(tr)); size < w.oldSize {
			if err := w.f.Truncate(size); err != nil {
				return fail(fmt.Errorf("queue: truncate %s: %w", w.id, err))
			}
		}
	}
	errs := make([]error, len(ws))
	if len(ws) == 1 {
		errs[0] = fdatasync(ws[0].f)
	} else {
		var wg sync.WaitGroup
		for i, w := range ws {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = fdatasync(w.f) }()
		}
		wg.Wait()
	}
	for i, w := range ws {
		if errs[i] != nil {
			return fail(fmt.Errorf("queue: fsync %s: %w", w.id, errs[i]))
		}
		if err := w.f.Close(); err != nil {
			return fail(fmt.Errorf("queue: %w", err))
		}
	}
	for _, w := range ws {
		// unix.Rename: os.Rename first looks whether the target is a
		// directory, a stat per message; ids are unique.
		if err := unix.Rename(w.path, s.path("msg", w.id)); err != nil {
			return fail(fmt.Errorf("queue: rename %s: %w", w.id, err))
		}
	}
	if err := s.syncDir(); err != nil {
		// The messages may or may not survive a power cut: do not promise them.
		return fail(fmt.Errorf("queue: fsync directory: %w", err))
	}
	s.fmu.Lock()
	lines := map[string]string{} // set -> its keys, one per line
	for i, w := range ws {
		w.done = true
		if d := envs[i].Dedup; !d.IsZero() {
			s.dedupKeys[w.id] = d
			lines[d.Set] += d.Key + "\n"
		}
	}
	s.fmu.Unlock()
	// The keys go into the fetched/ log now, once per batch, rather than
	// one fsync per message when it leaves the queue. Only after the
	// messages are durable: a logged key whose message was lost would be
	// skipped for good. Should this fail, Remove logs each key itself.
	for set, l := range lines {
		if err := s.fetchLog(set).append(l); err != nil {
			continue
		}
		s.fmu.Lock()
		for i, w := range ws {
			if d := envs[i].Dedup; !d.IsZero() && d.Set == set {
				s.dedupLogged[w.id] = true
			}
		}
		s.fmu.Unlock()
	}
	return nil
}

// Abort drops the message.
func (w *Writer) Abort() {
	if !w.done {
		w.done = true
		w.abort()
	}
}

func (w *Writer) abort() {
	w.f.Close()
	os.Remove(w.path)
}

// syncDir waits for an fsync of msg/ that started after the caller's
// rename. Concurrent callers share one fsync (group commit).
func (s *Store) syncDir() error {
	done := make(chan error, 1)
	select {
	case s.commits <- done:
	case <-s.closed:
		return errors.New("queue closed")
	}
	return <-done
}

func (s *Store) committer() {
	for {
		var batch []chan error
		select {
		case d := <-s.commits:
			batch = append(batch, d)
		case <-s.closed:
			return
		}
	drain:
		for {
			select {
			case d := <-s.commits:
				batch = append(batch, d)
			default:
				break drain
			}
		}
		// Files retired before this fsync starts may be reused once it
		// has succeeded (see retire).
		s.smu.Lock()
		retired := s.retired
		s.retired = nil
		s.smu.Unlock()
		err := s.msgDir.Sync()
		s.smu.Lock()
		if err == nil {
			s.spares = append(s.spares, retired...)
		} else {
			s.retired = append(retired, s.retired...)
		}
		s.smu.Unlock()
		for _, d := range batch {
			d <- err
		}
	}
}

// Open returns a reader of the message as it goes out: the envelope's
// prepended header fields, then the data.
func (s *Store) Open(env *Envelope) (io.ReadCloser, error) {
	// Counted while open: a message removed meanwhile (an operator's
	// delete during its delivery) is unlinked, never made a spare, so the
	// reader never sees the next message's bytes.
	s.smu.Lock()
	s.readers[env.ID]++
	s.smu.Unlock()
	f, err := openFile(s.path("msg", env.ID), unix.O_RDONLY, 0)
	if err != nil {
		s.doneReading(env.ID)
		return nil, fmt.Errorf("queue: %w", err)
	}
	return &msgReader{Reader: io.MultiReader(strings.NewReader(env.Prepend), io.LimitReader(f, env.Size)), f: f, s: s, id: env.ID}, nil
}

// msgReader is an open message; Close ends the reader's count.
type msgReader struct {
	io.Reader
	f    *os.File
	s    *Store
	id   string
	once sync.Once
}

func (r *msgReader) Close() error {
	err := r.f.Close()
	r.once.Do(func() { r.s.doneReading(r.id) })
	return err
}

func (s *Store) doneReading(id string) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.readers[id]--; s.readers[id] <= 0 {
		delete(s.readers, id)
	}
}

// OutSize is the size of the message as it goes out.
func (e *Envelope) OutSize() int64 { return e.Size + int64(len(e.Prepend)) }

// SaveState replaces the message's delivery state atomically.
func (s *Store) SaveState(id string, st *State) error {
	js, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	// No directory fsync (this runs under the queue's lock): a power cut
	// just after a save can bring back the previous state, which repeats
	// a step (an attempt, a notice) but never loses a message.
	s.smu.Lock()
	s.withState[id] = true
	s.smu.Unlock()
	if err := safeio.WriteFile(s.path("state", id), js, 0o600, safeio.NoDirSync); err != nil {
		return fmt.Errorf("queue: save state of %s: %w", id, err)
	}
	return nil
}

// Remove deletes a message: its data first (the fact that it exists), then
// its state. A message's de-duplication key is in fetched/ from its
// commit on (or is put there first, should that have failed), so that it
// is never lost that the message was taken.
func (s *Store) Remove(id string) error {
	s.fmu.Lock()
	key, logged := s.dedupKeys[id], s.dedupLogged[id]
	s.fmu.Unlock()
	if !key.IsZero() && !logged {
		if err := s.fetchLog(key.Set).append(key.Key + "\n"); err != nil {
			return fmt.Errorf("queue: record collected %s/%s: %w", key.Set, key.Key, err)
		}
	}
	if err := s.retire(id); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("queue: remove %s: %w", id, err)
	}
	s.smu.Lock()
	state := s.withState[id]
	delete(s.withState, id)
	s.smu.Unlock()
	if state {
		os.Remove(s.path("state", id))
	}
	if !key.IsZero() {
		s.fmu.Lock()
		delete(s.dedupKeys, id)
		delete(s.dedupLogged, id)
		s.fmu.Unlock()
	}
	return nil
}

// Seen returns the de-duplication keys of a set: those of messages still
// queued and those recorded in fetched/<set>.
func (s *Store) Seen(set string) (map[string]bool, error) {
	out := map[string]bool{}
	s.fmu.Lock()
	for _, d := range s.dedupKeys {
		if d.Set == set {
			out[d.Key] = true
		}
	}
	s.fmu.Unlock()
	var b []byte
	// Not while a write is half done: a torn last line is not a key.
	err := s.fetchLog(set).exclusive(func() (err error) {
		b, err = os.ReadFile(s.path("fetched", set))
		return err
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("queue: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			out[l] = true
		}
	}
	return out, nil
}

// PruneSeen forgets the recorded keys of a set that keep says no to (nil:
// all), so that the record does not grow without end. The caller decides:
// only it knows which keys can never come back.
func (s *Store) PruneSeen(set string, keep func(key string) bool) error {
	// Under the log's lock: an append landing between the read and the
	// rename below would be lost, and its message taken again.
	return s.fetchLog(set).exclusive(func() error { return s.pruneSeen(set, keep) })
}

func (s *Store) pruneSeen(set string, keep func(key string) bool) error {
	path := s.path("fetched", set)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var kept strings.Builder
	dropped := false
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		if keep != nil && keep(l) {
			kept.WriteString(l + "\n")
		} else {
			dropped = true
		}
	}
	if !dropped {
		return nil
	}
	return safeio.WriteFile(path, []byte(kept.String()), 0o600)
}

func (s *Store) readEnvelope(id string) (Envelope, error) {
	var env Envelope
	f, err := os.Open(s.path("msg", id))
	if err != nil {
		return env, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return env, err
	}
	env, err = DecodeTrailer(f, fi.Size())
	if err != nil {
		return env, err
	}
	if env.ID != id {
		return env, fmt.Errorf("envelope names id %q", env.ID)
	}
	return env, nil
}

// DecodeTrailer reads the envelope at the end of a message file of the
// given size and checks that it accounts for every byte.
func DecodeTrailer(r io.ReaderAt, size int64) (Envelope, error) {
	var env Envelope
	if size < 8 {
		return env, fmt.Errorf("file of %d bytes has no trailer", size)
	}
	var tr [8]byte
	if _, err := r.ReadAt(tr[:], size-8); err != nil {
		return env, err
	}
	if string(tr[4:]) != trailerMagic {
		return env, errors.New("trailer magic missing")
	}
	n := int64(binary.BigEndian.Uint32(tr[:4]))
	if n > maxEnvelope || n > size-8 {
		return env, fmt.Errorf("envelope length %d does not fit the file", n)
	}
	js := make([]byte, n)
	if _, err := r.ReadAt(js, size-8-n); err != nil {
		return env, err
	}
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(&env); err != nil {
		return env, fmt.Errorf("envelope: %w", err)
	}
	if env.Size != size-8-n {
		return env, fmt.Errorf("envelope says %d data bytes, file holds %d", env.Size, size-8-n)
	}
	if len(env.Rcpts) == 0 {
		return env, errors.New("envelope has no recipients")
	}
	return env, nil
}

func (s *Store) readState(id string, env *Envelope) (State, error) {
	n := len(env.Rcpts)
	st := State{Rcpts: make([]RcptState, n)}
	js, err := os.ReadFile(s.path("state", id))
	if errors.Is(err, os.ErrNotExist) {
		// Not yet tried, or a crash came before the first state was
		// saved: a quarantined message is held all the same.
		st.Hold = env.Quarantine != ""
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(js, &st); err != nil {
		return State{Rcpts: make([]RcptState, n)}, err
	}
	if len(st.Rcpts) != n {
		return State{Rcpts: make([]RcptState, n)}, fmt.Errorf("state has %d recipients, envelope %d", len(st.Rcpts), n)
	}
	return st, nil
}

// fdatasync makes a message file's data durable, with its size: a file
// written over in place keeps its blocks, and then no inode write is
// needed (fsync would write its times too).
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
