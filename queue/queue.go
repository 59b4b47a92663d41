package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Transport delivers messages for a route (the relay's SMTP client).
type Transport interface {
	// Open connects to the route's next hop. An error defers every message
	// waiting for the route: the destination is down.
	Open(ctx context.Context, route Route) (Session, error)
}

// Session is an open connection to a next hop, reused for several messages.
type Session interface {
	// Send delivers one message to its recipients and returns one Result per
	// recipient. A non-nil error means the session is unusable afterwards.
	Send(ctx context.Context, m *Outgoing) ([]Result, error)
	Close() error
}

// Outgoing is a message handed to a Session.
type Outgoing struct {
	ID    string
	From  string
	Rcpts []string
	Size  int64
	Data  io.Reader
	// What the sender asked for with the message: SMTPUTF8 and the DSN
	// parameters (see Envelope), and per recipient Params[i] for
	// Rcpts[i] (its Notify and ORCPT).
	SMTPUTF8   bool
	UTF8Header bool
	Ret, EnvID string
	Params     []Rcpt
}

// Result is the outcome for one recipient.
type Result struct {
	OK        bool
	Permanent bool   // 5xx: bounce now
	Text      string // the reply or the error, for logs and DSNs
	Status    string // enhanced status code, e.g. 5.1.1, when known
	RemoteMTA string
	// DSN: the next hop offered DSN and took the recipient's request
	// with the message; any notification is its duty now (RFC 3461 4).
	DSN bool
}

// Policy are the retry rules.
type Policy struct {
	Lifetime     time.Duration
	MinBackoff   time.Duration
	MaxBackoff   time.Duration
	DelayWarning time.Duration // 0: none
	Concurrency  int           // sessions per route
	Linger       time.Duration // how long an idle session waits for more mail
}

// Notice is what the queue asks the relay to tell a sender: recipients
// that failed for good, or (Delayed) that are still being retried.
type Notice struct {
	Envelope Envelope
	State    State
	Rcpts    []int
	Delayed  bool
}

// Counters are the queue's totals since start.
type Counters struct {
	Received  int64 `json:"received"`
	Delivered int64 `json:"delivered"` // recipients
	Deferred  int64 `json:"deferred"`  // recipient attempts that failed temporarily
	Bounced   int64 `json:"bounced"`   // recipients that failed for good
}

// Queue schedules delivery of the messages in a Store.
type Queue struct {
	store  *Store
	tr     Transport
	notify func(Notice) error
	log    *slog.Logger

	mu       sync.Mutex
	pol      Policy
	msgs     map[string]*entry
	lanes    map[Route]*lane
	down     map[Route]downRoute // routes whose next hop could not be reached
	deferred deferHeap
	wake     chan struct{}
	count    Counters
	ctx      context.Context
	wg       sync.WaitGroup
	now      func() time.Time
}

type entry struct {
	env      Envelope
	st       State
	inflight int  // jobs out on routes
	deleted  bool // removed by the operator while in flight
	heapIdx  int  // index in deferred, -1 when not there
}

type job struct {
	e     *entry
	rcpts []int
}

// downRoute remembers a failed connection so that mail for the same next
// hop is deferred without trying again until the period ends (Postfix:
// "delivery temporarily suspended").
type downRoute struct {
	until time.Time
	err   error
}

// lane is the jobs waiting for one route and the workers sending them.
type lane struct {
	route   Route
	jobs    []job
	workers int
	kick    chan struct{}
}

// New starts a queue over store with the messages loaded from it. notify
// is called (without locks held) for DSNs; an error keeps the message and
// retries the notice later.
func New(ctx context.Context, store *Store, loaded []Loaded, tr Transport, pol Policy, notify func(Notice) error, log *slog.Logger) *Queue {
	if pol.Concurrency < 1 {
		pol.Concurrency = 1
	}
	if pol.Linger == 0 {
		pol.Linger = time.Second
	}
	q := &Queue{store: store, tr: tr, notify: notify, log: log, pol: pol, msgs: map[string]*entry{},
		lanes: map[Route]*lane{}, down: map[Route]downRoute{}, wake: make(chan struct{}, 1), ctx: ctx, now: time.Now}
	q.mu.Lock()
	for _, l := range loaded {
		e := &entry{env: l.Envelope, st: l.State, heapIdx: -1}
		q.msgs[e.env.ID] = e
		q.schedule(e)
	}
	q.mu.Unlock()
	q.wg.Add(1)
	go q.timer()
	return q
}

// SetPolicy applies new retry rules (config reload).
func (q *Queue) SetPolicy(p Policy) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p.Linger == 0 {
		p.Linger = q.pol.Linger
	}
	q.pol = p
}

// Wait returns when the queue's goroutines have stopped (after ctx ends).
func (q *Queue) Wait() { q.wg.Wait() }

// Add schedules a message that was just committed to the store.
func (q *Queue) Add(env Envelope) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.count.Received++
	e := &entry{env: env, st: State{Rcpts: make([]RcptState, len(env.Rcpts))}, heapIdx: -1}
	q.msgs[env.ID] = e
	if env.Quarantine != "" {
		e.st.Hold = true
		if err := q.store.SaveState(env.ID, &e.st); err != nil {
			q.log.Error("queue: save the quarantine hold; the envelope holds it", "id", env.ID, "err", err)
		}
		q.log.Warn("message quarantined: held until released", "id", env.ID, "why", env.Quarantine)
		return
	}
	q.dispatch(e)
}

// Incoming is a message to queue whole (AddBatch).
type Incoming struct {
	Envelope *Envelope // its ID and Size are filled in
	// Write writes the message data; id is the message's queue id (for
	// its trace field).
	Write func(w io.Writer, id string) error
}

// AddBatch writes messages, commits them together (one directory fsync
// covers them all: Store.CommitBatch) and schedules them. It returns once
// every one is on disk; on an error none is queued.
func (q *Queue) AddBatch(msgs []Incoming) error {
	ws := make([]*Writer, 0, len(msgs))
	envs := make([]*Envelope, 0, len(msgs))
	defer func() {
		for _, w := range ws {
			w.Abort()
		}
	}()
	for _, m := range msgs {
		w, err := q.store.Create()
		if err != nil {
			return err
		}
		ws = append(ws, w)
		if err := m.Write(w, w.ID()); err != nil {
			return fmt.Errorf("queue: write %s: %w", w.ID(), err)
		}
		envs = append(envs, m.Envelope)
	}
	if err := q.store.CommitBatch(ws, envs); err != nil {
		return err
	}
	for _, env := range envs {
		q.Add(*env)
	}
	return nil
}

// schedule puts a loaded or finished-round entry where it belongs.
func (q *Queue) schedule(e *entry) {
	switch {
	case e.st.Hold:
	case !e.st.NextTry.After(q.now()):
		q.dispatch(e)
	default:
		heap.Push(&q.deferred, e)
		q.poke()
	}
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// dispatch splits the pending recipients of e by route and queues the jobs.
func (q *Queue) dispatch(e *entry) {
	if e.inflight > 0 || e.deleted {
		return
	}
	byRoute := map[Route][]int{}
	var order []Route
	for i, r := range e.env.Rcpts {
		if e.st.Rcpts[i].Status != Pending {
			continue
		}
		if _, ok := byRoute[r.Route]; !ok {
			order = append(order, r.Route)
		}
		byRoute[r.Route] = append(byRoute[r.Route], i)
	}
	if len(order) == 0 {
		// Nothing pending: a round finished before a crash, or a notice
		// is owed. Finish it now.
		e.inflight = 1
		q.wg.Add(1)
		go func() { defer q.wg.Done(); q.done(e) }()
		return
	}
	e.inflight = len(order)
	for _, rt := range order {
		if d, ok := q.down[rt]; ok {
			if q.now().Before(d.until) {
				j := job{e: e, rcpts: byRoute[rt]}
				err := fmt.Errorf("delivery temporarily suspended: %w", d.err)
				q.wg.Add(1)
				go func() { defer q.wg.Done(); q.finishJob(j, nil, err) }()
				continue
			}
			delete(q.down, rt)
		}
		ln := q.lanes[rt]
		if ln == nil {
			ln = &lane{route: rt, kick: make(chan struct{}, 1)}
			q.lanes[rt] = ln
		}
		ln.jobs = append(ln.jobs, job{e: e, rcpts: byRoute[rt]})
		if ln.workers < q.pol.Concurrency && ln.workers < len(ln.jobs) {
			ln.workers++
			q.wg.Add(1)
			go q.worker(ln)
		} else {
			select {
			case ln.kick <- struct{}{}:
			default:
			}
		}
	}
}

// next takes a job from the lane, or returns false when the worker should
// end because there is none.
func (q *Queue) next(ln *lane) (job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(ln.jobs) > 0 {
		j := ln.jobs[0]
		ln.jobs[0] = job{}
		ln.jobs = ln.jobs[1:]
		if !j.e.deleted {
			return j, true
		}
	}
	return job{}, false
}

// linger is how long an idle worker keeps its session; SetPolicy may
// replace the policy meanwhile.
func (q *Queue) linger() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pol.Linger
}

func (q *Queue) worker(ln *lane) {
	defer q.wg.Done()
	var sess Session
	defer func() {
		if sess != nil {
			sess.Close()
		}
	}()
	idle := time.NewTimer(q.linger())
	defer idle.Stop()
	for {
		j, ok := q.next(ln)
		if !ok {
			idle.Reset(q.linger())
			select {
			case <-ln.kick:
				continue
			case <-idle.C:
			case <-q.ctx.Done():
			}
			q.mu.Lock()
			if len(ln.jobs) > 0 && q.ctx.Err() == nil {
				q.mu.Unlock()
				continue
			}
			ln.workers--
			if ln.workers == 0 && len(ln.jobs) == 0 {
				delete(q.lanes, ln.route)
			}
			q.mu.Unlock()
			return
		}
		if q.ctx.Err() != nil {
			q.finishJob(j, nil, errors.New("relay shutting down"))
			continue
		}
		if sess == nil {
			s, err := q.tr.Open(q.ctx, ln.route)
			if err != nil {
				// The destination is down: defer everything waiting for it
				// rather than trying each message against a dead host. Only
				// what waits now: jobs dispatched while these are deferred
				// must not be deferred with this error too, or with a short
				// backoff the deferrals feed themselves and no worker ever
				// tries the destination again (seen: minutes without a
				// connection attempt after the next hop came back).
				q.mu.Lock()
				q.down[ln.route] = downRoute{until: q.now().Add(min(q.pol.MinBackoff, 5*time.Minute)), err: err}
				waiting := ln.jobs
				ln.jobs = nil
				q.mu.Unlock()
				q.finishJob(j, nil, err)
				for _, w := range waiting {
					if !w.e.deleted {
						q.finishJob(w, nil, err)
					}
				}
				continue
			}
			sess = s
		}
		res, err := q.send(sess, j)
		if err != nil {
			sess.Close()
			sess = nil
		}
		q.finishJob(j, res, err)
	}
}

func (q *Queue) send(sess Session, j job) ([]Result, error) {
	env := &j.e.env
	data, err := q.store.Open(env)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	m := &Outgoing{ID: env.ID, From: env.From, Size: env.OutSize(), Data: data,
		SMTPUTF8: env.SMTPUTF8, UTF8Header: env.UTF8Header, Ret: env.Ret, EnvID: env.EnvID}
	for _, i := range j.rcpts {
		m.Rcpts = append(m.Rcpts, env.Rcpts[i].Addr)
		m.Params = append(m.Params, env.Rcpts[i])
	}
	res, err := sess.Send(q.ctx, m)
	if len(res) != len(j.rcpts) {
		if err == nil {
			err = fmt.Errorf("transport returned %d results for %d recipients", len(res), len(j.rcpts))
		}
		res = nil
	}
	return res, err
}

// finishJob records the results of one job; res nil means err applies to
// every recipient of the job, temporarily.
func (q *Queue) finishJob(j job, res []Result, err error) {
	now := q.now()
	q.mu.Lock()
	e := j.e
	for k, i := range j.rcpts {
		r := Result{Text: fmt.Sprint(err), Status: "4.4.1"}
		if res != nil {
			r = res[k]
		}
		rs := &e.st.Rcpts[i]
		rs.Attempts++
		rs.LastTry = now
		rs.RemoteMTA = r.RemoteMTA
		switch {
		case r.OK:
			rs.Status, rs.LastError, rs.Relayed = Sent, "", !r.DSN
			q.count.Delivered++
			q.log.Info("delivered", "id", e.env.ID, "to", e.env.Rcpts[i].Addr, "route", e.env.Rcpts[i].Route, "relay", r.RemoteMTA, "reply", r.Text)
		case r.Permanent && !e.env.Dedup.IsZero():
			// A collected message is not bounced: its Return-Path was
			// accepted by the mailbox provider, not by us, and is often
			// forged (backscatter); and the message is gone from the
			// server. It is held for the operator (queue release after
			// mending, or delete), the recipient left pending.
			rs.LastError = withStatus(r)
			e.st.Hold = true
			q.log.Error("collected message refused by the next hop: held, not bounced", "id", e.env.ID, "to", e.env.Rcpts[i].Addr, "relay", r.RemoteMTA, "reply", r.Text)
		case r.Permanent:
			rs.Status, rs.LastError = Failed, withStatus(r)
			q.count.Bounced++
			q.log.Warn("bounced", "id", e.env.ID, "to", e.env.Rcpts[i].Addr, "route", e.env.Rcpts[i].Route, "relay", r.RemoteMTA, "reply", r.Text)
		default:
			rs.LastError = withStatus(r)
			q.count.Deferred++
			q.log.Warn("deferred", "id", e.env.ID, "to", e.env.Rcpts[i].Addr, "route", e.env.Rcpts[i].Route, "relay", r.RemoteMTA, "reply", r.Text)
		}
	}
	e.inflight--
	last := e.inflight == 0
	q.mu.Unlock()
	if last {
		q.done(e)
	}
}

func withStatus(r Result) string {
	if r.Status == "" {
		return r.Text
	}
	return r.Status + " " + r.Text
}

// done ends a delivery round of e: remove it when every recipient is
// settled, otherwise save its state and schedule the next try.
func (q *Queue) done(e *entry) {
	now := q.now()
	q.mu.Lock()
	pol := q.pol
	if e.deleted {
		e.inflight = 0
		q.mu.Unlock()
		return
	}
	var pending, owed []int
	for i, rs := range e.st.Rcpts {
		r := e.env.Rcpts[i]
		switch {
		case rs.Status == Pending:
			pending = append(pending, i)
		case rs.Notified:
		case rs.Status == Failed && !r.Wants(NotifyFailure):
			// NOTIFY=NEVER, or without FAILURE: the sender asked not to
			// hear of it (RFC 3461 4.1). The log has it.
			e.st.Rcpts[i].Notified = true
			q.log.Info("no DSN: the sender asked for none", "id", e.env.ID, "to", r.Addr, "notify", r.Notify)
		case rs.Status == Failed:
			owed = append(owed, i)
		case rs.Status == Sent && rs.Relayed && r.Wants(NotifySuccess):
			owed = append(owed, i) // "relayed": the next hop will not tell
		}
	}
	expired := len(pending) > 0 && now.Sub(e.env.Arrived) >= pol.Lifetime
	if expired && !e.env.Dedup.IsZero() {
		// A collected message is gone from its mailbox: past its lifetime
		// it is held for the operator rather than expired and bounced.
		expired = false
		if !e.st.Hold {
			e.st.Hold = true
			q.log.Error("collected message past the queue lifetime: held, not bounced", "id", e.env.ID, "age", now.Sub(e.env.Arrived).Round(time.Second))
		}
	}
	if expired {
		for _, i := range pending {
			rs := &e.st.Rcpts[i]
			rs.Status = Failed
			rs.LastError = "4.4.7 message expired in queue; last error: " + rs.LastError
			q.count.Bounced++
			q.log.Warn("expired", "id", e.env.ID, "to", e.env.Rcpts[i].Addr, "age", now.Sub(e.env.Arrived).Round(time.Second))
			if e.env.Rcpts[i].Wants(NotifyFailure) {
				owed = append(owed, i)
			} else {
				rs.Notified = true
			}
		}
		pending = nil
		sort.Ints(owed)
	}
	var delayed []int
	if !e.st.Warned {
		delayed = delayedRcpts(e.env, pending, pol.DelayWarning, now)
	}
	warn := len(delayed) > 0
	env, st := e.env, cloneState(e.st)
	q.mu.Unlock()

	notifyErr := error(nil)
	if len(owed) > 0 && q.wantsNotice(env) {
		notifyErr = q.notify(Notice{Envelope: env, State: st, Rcpts: owed})
	}
	if warn && q.wantsNotice(env) && q.notify(Notice{Envelope: env, State: st, Rcpts: delayed, Delayed: true}) == nil {
		st.Warned = true
	}

	q.mu.Lock()
	e.st.Warned = st.Warned
	if notifyErr == nil {
		for _, i := range owed {
			e.st.Rcpts[i].Notified = true
		}
	} else {
		q.log.Error("DSN not queued; will retry", "id", env.ID, "err", notifyErr)
	}
	e.inflight = 0
	if len(pending) == 0 && notifyErr == nil {
		delete(q.msgs, env.ID)
		q.mu.Unlock()
		// Outside the lock: removing a collected message waits for an
		// fsync, and the other workers must not wait for it.
		if err := q.store.Remove(env.ID); err != nil {
			q.log.Error("remove", "id", env.ID, "err", err)
		}
		return
	}
	defer q.mu.Unlock()
	e.st.Attempts++
	e.st.NextTry = now.Add(backoff(pol, e.st.Attempts))
	if err := q.store.SaveState(env.ID, &e.st); err != nil {
		q.log.Error("save state", "id", env.ID, "err", err)
	}
	if !e.st.Hold {
		heap.Push(&q.deferred, e)
		q.poke()
	}
}

// wantsNotice says whether the sender gets DSNs: never the null sender,
// and never a collected message's Return-Path, which the mailbox provider
// accepted, not we (backscatter).
func (q *Queue) wantsNotice(env Envelope) bool {
	return env.From != "" && !env.DSN && env.Dedup.IsZero()
}

// delayNotice is when a recipient that asked for NOTIFY=DELAY hears of a
// delay if the relay sends no delay warnings of its own (Postfix's
// suggested delay_warning_time).
const delayNotice = 4 * time.Hour

// delayedRcpts are the pending recipients whose sender is owed a delay
// notice by now: those that asked for it (RFC 3461 4.1), after the delay
// warning time or delayNotice; those that gave no NOTIFY, after the delay
// warning time when there is one. One notice per message.
func delayedRcpts(env Envelope, pending []int, warning time.Duration, now time.Time) []int {
	var out []int
	for _, i := range pending {
		r := env.Rcpts[i]
		after := warning
		if r.Wants(NotifyDelay) && after == 0 {
			after = delayNotice
		}
		if after > 0 && now.Sub(env.Arrived) >= after && (r.Notify == "" || r.Wants(NotifyDelay)) {
			out = append(out, i)
		}
	}
	return out
}

func cloneState(s State) State {
	s.Rcpts = append([]RcptState(nil), s.Rcpts...)
	return s
}

// backoff doubles from MinBackoff per attempt up to MaxBackoff.
func backoff(p Policy, attempts int) time.Duration {
	d := p.MinBackoff
	for i := 1; i < attempts && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

// timer dispatches deferred messages when they are due.
func (q *Queue) timer() {
	defer q.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		q.mu.Lock()
		now := q.now()
		for q.deferred.Len() > 0 && !q.deferred[0].st.NextTry.After(now) {
			e := heap.Pop(&q.deferred).(*entry)
			q.dispatch(e)
		}
		wait := time.Hour
		if q.deferred.Len() > 0 {
			wait = q.deferred[0].st.NextTry.Sub(now)
		}
		q.mu.Unlock()
		t.Reset(wait)
		select {
		case <-t.C:
		case <-q.wake:
		case <-q.ctx.Done():
			return
		}
	}
}

// Flush makes every deferred message due now (postqueue -f).
func (q *Queue) Flush() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	q.down = map[Route]downRoute{}
	for _, e := range q.deferred {
		e.st.NextTry = time.Time{}
		n++
	}
	q.poke()
	return n
}

// ErrNotFound is returned for an unknown queue id.
var ErrNotFound = errors.New("no such message in the queue")

// Hold keeps a message from delivery until Release (postsuper -h).
func (q *Queue) Hold(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.msgs[id]
	if e == nil {
		return ErrNotFound
	}
	e.st.Hold = true
	if e.heapIdx >= 0 {
		heap.Remove(&q.deferred, e.heapIdx)
	}
	return q.store.SaveState(id, &e.st)
}

// Release undoes Hold and makes the message due now (postsuper -H).
func (q *Queue) Release(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.msgs[id]
	if e == nil {
		return ErrNotFound
	}
	if !e.st.Hold {
		return nil
	}
	e.st.Hold = false
	e.st.NextTry = time.Time{}
	if err := q.store.SaveState(id, &e.st); err != nil {
		return err
	}
	q.dispatch(e)
	return nil
}

// Delete removes a message without notice (postsuper -d).
func (q *Queue) Delete(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.msgs[id]
	if e == nil {
		return ErrNotFound
	}
	e.deleted = true
	if e.heapIdx >= 0 {
		heap.Remove(&q.deferred, e.heapIdx)
	}
	delete(q.msgs, id)
	q.log.Info("deleted by operator", "id", id)
	return q.store.Remove(id)
}

// Info describes a queued message for `gatehouse queue list`.
type Info struct {
	ID       string    `json:"id"`
	Size     int64     `json:"size"`
	Arrived  time.Time `json:"arrived"`
	From     string    `json:"from"`
	Rcpts    []string  `json:"rcpts"`
	Routes   []Route   `json:"routes"`
	Status   []string  `json:"status"` // per recipient: pending | sent | failed
	Active   bool      `json:"active"` // a delivery is in progress
	Hold     bool      `json:"hold"`
	NextTry  time.Time `json:"next_try,omitzero"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"last_error,omitempty"`
	Errors   []string  `json:"errors,omitempty"` // per recipient
	// What the sender asked for: SMTPUTF8, and the DSN parameters (per
	// recipient, present when any recipient has one).
	SMTPUTF8 bool     `json:"smtputf8,omitempty"`
	Ret      string   `json:"ret,omitempty"`
	EnvID    string   `json:"envid,omitempty"`
	Notify   []string `json:"notify,omitempty"`
	ORCPT    []string `json:"orcpt,omitempty"`
}

// List returns the queued messages, oldest first.
func (q *Queue) List() []Info {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Info, 0, len(q.msgs))
	for _, e := range q.msgs {
		out = append(out, info(e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get describes one message.
func (q *Queue) Get(id string) (Info, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.msgs[id]
	if e == nil {
		return Info{}, ErrNotFound
	}
	return info(e), nil
}

func info(e *entry) Info {
	in := Info{ID: e.env.ID, Size: e.env.Size, Arrived: e.env.Arrived, From: e.env.From, Active: e.inflight > 0,
		Hold: e.st.Hold, NextTry: e.st.NextTry, Attempts: e.st.Attempts,
		SMTPUTF8: e.env.SMTPUTF8, Ret: e.env.Ret, EnvID: e.env.EnvID}
	var notify, orcpt []string
	anyNotify, anyORCPT := false, false
	for _, r := range e.env.Rcpts {
		notify, orcpt = append(notify, r.Notify), append(orcpt, r.ORCPT.Field(true))
		anyNotify, anyORCPT = anyNotify || r.Notify != "", anyORCPT || !r.ORCPT.IsZero()
	}
	if anyNotify {
		in.Notify = notify
	}
	if anyORCPT {
		in.ORCPT = orcpt
	}
	for i, r := range e.env.Rcpts {
		rs := e.st.Rcpts[i]
		in.Rcpts = append(in.Rcpts, r.Addr)
		in.Routes = append(in.Routes, r.Route)
		st := rs.Status
		if st == Pending {
			st = "pending"
		}
		in.Status = append(in.Status, st)
		in.Errors = append(in.Errors, rs.LastError)
		if rs.LastError != "" && rs.Status == Pending {
			in.Error = rs.LastError
		}
	}
	return in
}

// Stats are the queue's depth and counters.
type Stats struct {
	Depth    int `json:"depth"`
	Deferred int `json:"deferred"`
	Held     int `json:"held"`
	Active   int `json:"active"`
	Counters
}

// Stats returns depth and counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{Depth: len(q.msgs), Deferred: q.deferred.Len(), Counters: q.count}
	for _, e := range q.msgs {
		if e.st.Hold {
			s.Held++
		}
		if e.inflight > 0 {
			s.Active++
		}
	}
	return s
}

// deferHeap orders deferred entries by their next try.
type deferHeap []*entry

func (h deferHeap) Len() int           { return len(h) }
func (h deferHeap) Less(i, j int) bool { return h[i].st.NextTry.Before(h[j].st.NextTry) }
func (h deferHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *deferHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *deferHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.heapIdx = -1
	*h = old[:len(old)-1]
	return e
}
