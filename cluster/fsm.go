package cluster

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Version is one version of the cluster's config: the shared sections,
// the secret files they name, who applied it and when.
type Version struct {
	Seq    uint64            `json:"seq"`
	Hash   string            `json:"hash"` // of Doc
	Author string            `json:"author"`
	Time   time.Time         `json:"time"`
	Doc    []byte            `json:"doc"`
	Files  map[string][]byte `json:"files,omitempty"` // path → content
}

// Pending is an applied config waiting for `config confirm`: unless the
// confirmation is committed by Deadline, the leader rolls every node back
// to Previous.
type Pending struct {
	Seq      uint64    `json:"seq"`
	Deadline time.Time `json:"deadline"`
	Previous *Version  `json:"previous"`
}

// Token is a one-time join token as the cluster keeps it: the secret only
// as a hash.
type Token struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secret_hash"`
	Expires    time.Time `json:"expires"`
	Used       bool      `json:"used"`
}

// Member is a node of the cluster with the certificate it joined with.
type Member struct {
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	Address     string    `json:"address"`
	Fingerprint string    `json:"fingerprint"`
	Joined      time.Time `json:"joined"`
}

// state is what the cluster agrees on.
type state struct {
	Config  *Version           `json:"config,omitempty"`
	Pending *Pending           `json:"pending,omitempty"`
	Tokens  map[string]*Token  `json:"tokens"`
	Members map[string]*Member `json:"members"`
	Removed map[string]string  `json:"removed"` // certificate fingerprint → node name
}

func newState() *state {
	return &state{Tokens: map[string]*Token{}, Members: map[string]*Member{}, Removed: map[string]string{}}
}

// command is one entry of the Raft log, sealed with the cluster key. Now
// is the leader's clock when it was proposed: applying a command never
// reads the local clock, so every node comes to the same state.
type command struct {
	Op      string        `json:"op"` // config | confirm | rollback | token | token-use | member | remove
	Now     time.Time     `json:"now"`
	Version *Version      `json:"version,omitempty"`
	Within  time.Duration `json:"within,omitempty"` // config: confirm within this, or 0
	Seq     uint64        `json:"seq,omitempty"`    // confirm, rollback: of the pending version
	Token   *Token        `json:"token,omitempty"`
	Secret  string        `json:"secret,omitempty"` // token-use: the secret the joiner showed
	Member  *Member       `json:"member,omitempty"`
	Name    string        `json:"name,omitempty"` // remove
}

// fsm applies the log to the state. Watchers hear of every change.
type fsm struct {
	seal *sealer

	mu      sync.Mutex
	st      *state
	changed chan struct{} // closed and replaced on every change
}

func newFSM(seal *sealer) *fsm {
	return &fsm{seal: seal, st: newState(), changed: make(chan struct{})}
}

// Errors the log's commands may end in.
var (
	errTokenUnknown = errors.New("unknown token")
	errTokenUsed    = errors.New("token already used")
	errTokenExpired = errors.New("token expired")
	errPending      = errors.New("an applied config is waiting for confirmation: confirm it first, or wait for the rollback")
)

// Apply implements raft.FSM. What it returns is an error or a result.
func (f *fsm) Apply(l *raft.Log) any {
	plain, err := f.seal.open(l.Data)
	if err != nil {
		return err
	}
	var c command
	if err := json.Unmarshal(plain, &c); err != nil {
		return fmt.Errorf("log entry %d: %w", l.Index, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.apply(&c)
	if _, isErr := res.(error); !isErr {
		close(f.changed)
		f.changed = make(chan struct{})
	}
	return res
}

func (f *fsm) apply(c *command) any {
	st := f.st
	switch c.Op {
	case "config":
		if st.Pending != nil {
			return errPending
		}
		v := *c.Version
		v.Seq = 1
		if st.Config != nil {
			v.Seq = st.Config.Seq + 1
		}
		if c.Within > 0 {
			st.Pending = &Pending{Seq: v.Seq, Deadline: c.Now.Add(c.Within), Previous: st.Config}
		}
		st.Config = &v
		return v.Seq
	case "confirm":
		if st.Pending == nil {
			return errors.New("no applied config is waiting for confirmation")
		}
		if c.Seq != 0 && c.Seq != st.Pending.Seq {
			return fmt.Errorf("version %d is no longer the one waiting", c.Seq)
		}
		st.Pending = nil
		return st.Config.Seq
	case "rollback":
		if st.Pending == nil || st.Pending.Seq != c.Seq {
			return errors.New("nothing to roll back: confirmed meanwhile")
		}
		prev := st.Pending.Previous
		st.Pending = nil
		if prev == nil {
			return errors.New("no previous version")
		}
		v := *prev
		v.Seq = st.Config.Seq + 1
		v.Author = fmt.Sprintf("rollback of version %d (not confirmed)", c.Seq)
		v.Time = c.Now
		st.Config = &v
		return v.Seq
	case "token":
		for id, t := range st.Tokens { // forget the spent and the expired
			if t.Used || c.Now.After(t.Expires) {
				delete(st.Tokens, id)
			}
		}
		st.Tokens[c.Token.ID] = c.Token
		return nil
	case "token-use":
		t, ok := st.Tokens[c.Token.ID]
		switch {
		case !ok:
			return errTokenUnknown
		case t.Used:
			return errTokenUsed
		case c.Now.After(t.Expires):
			return errTokenExpired
		}
		if subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(secretHash(c.Secret))) != 1 {
			return errTokenUnknown
		}
		t.Used = true
		return nil
	case "member":
		m := *c.Member
		if old, ok := st.Members[m.Name]; ok && old.Fingerprint != m.Fingerprint {
			st.Removed[old.Fingerprint] = old.Name // its old certificate is no good any more
		}
		st.Members[m.Name] = &m
		return nil
	case "remove":
		m, ok := st.Members[c.Name]
		if !ok {
			return fmt.Errorf("no member named %q", c.Name)
		}
		st.Removed[m.Fingerprint] = m.Name
		delete(st.Members, c.Name)
		return nil
	}
	return fmt.Errorf("unknown command %q", c.Op)
}

func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// view returns a copy of the state and the channel closed on its next
// change.
func (f *fsm) view() (state, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := *f.st
	st.Members = maps.Clone(f.st.Members)
	st.Removed = maps.Clone(f.st.Removed)
	st.Tokens = nil
	return st, f.changed
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.st)
	if err != nil {
		return nil, err
	}
	return snapshot(f.seal.seal(b)), nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(r io.ReadCloser) error {
	defer r.Close()
	sealed, err := io.ReadAll(io.LimitReader(r, 256<<20))
	if err != nil {
		return err
	}
	plain, err := f.seal.open(sealed)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	st := newState()
	if err := json.Unmarshal(plain, st); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if st.Tokens == nil {
		st.Tokens = map[string]*Token{}
	}
	if st.Members == nil {
		st.Members = map[string]*Member{}
	}
	if st.Removed == nil {
		st.Removed = map[string]string{}
	}
	f.mu.Lock()
	f.st = st
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
