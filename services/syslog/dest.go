package syslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"gatehouse/config"
	"gatehouse/status"
)

// Connection states.
const (
	stateConnecting = "connecting"
	stateUp         = "up"
	stateDown       = "down"
)

// Timing of a destination's connection.
const (
	dialTimeout  = 10 * time.Second
	writeTimeout = 30 * time.Second
	minBackoff   = 500 * time.Millisecond
	maxBackoff   = 30 * time.Second
	// closeTimeout bounds sending what is queued, and close_notify, at
	// shutdown.
	closeTimeout = 2 * time.Second
	batchMax     = 1024 // records per write
)

// destination is one syslog server: a bounded buffer of formatted
// records and the goroutine that sends them. Enqueue never blocks.
type destination struct {
	cfg      config.SyslogDestination
	name     string
	facility int
	minSev   int
	hostname func() string
	log      *slog.Logger

	wake chan struct{} // something was queued
	stop context.CancelFunc
	done chan struct{}

	mu          sync.Mutex
	queue       [][]byte
	queuedBytes int
	state       string
	since       time.Time
	lastErr     string
	sent        uint64
	dropped     uint64
	unreported  uint64 // dropped and not yet reported to the server
	droppedDown bool   // some of those while the server was not up
}

func newDestination(cfg config.SyslogDestination, hostname func() string, log *slog.Logger) *destination {
	name := fmt.Sprintf("%s://%s", cfg.Transport, net.JoinHostPort(cfg.Server, strconv.Itoa(cfg.Port)))
	return &destination{cfg: cfg, name: name, hostname: hostname,
		facility: slices.Index(config.SyslogFacilities, cfg.Facility),
		minSev:   slices.Index(config.SyslogSeverities, cfg.Severity),
		log:      log.With("destination", name),
		wake:     make(chan struct{}, 1), done: make(chan struct{}),
		state: stateConnecting, since: time.Now()}
}

// start runs the sender until stop.
func (d *destination) start(ctx context.Context) {
	ctx, d.stop = context.WithCancel(ctx)
	go func() {
		defer close(d.done)
		d.run(ctx)
	}()
}

// close stops the sender: what is queued gets closeTimeout to go out,
// then the connection closes (with close_notify over TLS).
func (d *destination) close() {
	d.stop()
	<-d.done
}

// wants says whether a record of severity sev goes to this server.
func (d *destination) wants(sev int) bool { return sev <= d.minSev }

// enqueue adds a formatted record, or drops and counts it when the
// buffer is full.
func (d *destination) enqueue(rec []byte) {
	d.mu.Lock()
	if d.queuedBytes+len(rec) > int(d.cfg.Buffer.Bytes) {
		d.dropped++
		d.unreported++
		if d.state != stateUp {
			d.droppedDown = true
		}
		d.mu.Unlock()
		return
	}
	d.queue = append(d.queue, rec)
	d.queuedBytes += len(rec)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// take removes up to n records from the front of the queue.
func (d *destination) take(n int) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	n = min(n, len(d.queue))
	batch := slices.Clone(d.queue[:n])
	clear(d.queue[:n])
	d.queue = d.queue[n:]
	if len(d.queue) == 0 {
		d.queue = nil // let the backing array go
	}
	for _, r := range batch {
		d.queuedBytes -= len(r)
	}
	return batch
}

// putBack returns a batch that did not go out to the front of the queue.
func (d *destination) putBack(batch [][]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queue = append(batch, d.queue...)
	for _, r := range batch {
		d.queuedBytes += len(r)
	}
}

// sentOK counts a batch that went out, and queues the report of what was
// dropped before, if anything was: the server learns what it missed.
func (d *destination) sentOK(n int) {
	d.mu.Lock()
	d.sent += uint64(n)
	lost, down := d.unreported, d.droppedDown
	d.unreported, d.droppedDown = 0, false
	d.mu.Unlock()
	if lost == 0 {
		return
	}
	msg := fmt.Sprintf("%d messages dropped while unreachable", lost)
	if !down {
		msg = fmt.Sprintf("%d messages dropped: the server did not keep up", lost)
	}
	d.log.Warn(msg)
	rec := Format(nil, &Entry{Time: time.Now(), Hostname: d.hostname(), AppName: "syslog", ProcID: strconv.Itoa(os.Getpid()),
		MsgID: "dropped", Severity: SevWarning, Params: []Param{{"dropped", strconv.FormatUint(lost, 10)}}, Msg: msg},
		d.facility, int(d.cfg.MaxMessage.Bytes))
	d.mu.Lock() // the report goes in even when the buffer is full again
	d.queue = append(d.queue, rec)
	d.queuedBytes += len(rec)
	d.mu.Unlock()
}

func (d *destination) setState(state string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != state {
		d.state, d.since = state, time.Now()
	}
	if err != nil {
		d.lastErr = err.Error()
	}
}

func (d *destination) status() status.SyslogDestination {
	d.mu.Lock()
	defer d.mu.Unlock()
	return status.SyslogDestination{Name: d.name, State: d.state, Since: d.since, LastError: d.lastErr,
		Queued: len(d.queue), QueuedBytes: d.queuedBytes, Sent: d.sent, Dropped: d.dropped}
}

// run connects, sends, and reconnects with a doubling backoff, until ctx
// ends.
func (d *destination) run(ctx context.Context) {
	backoff := minBackoff
	for {
		conn, err := d.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.setState(stateDown, err)
			d.log.Warn("syslog server unreachable; buffering", "err", err, "retry_in", backoff)
		} else {
			d.setState(stateUp, nil)
			d.log.Info("syslog server connected")
			up := time.Now()
			err = d.pump(ctx, conn)
			if ctx.Err() != nil {
				return
			}
			d.setState(stateDown, err)
			d.log.Warn("syslog server connection lost; buffering", "err", err)
			if time.Since(up) > maxBackoff {
				backoff = minBackoff
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// dial connects to the server; for TLS it verifies the server's
// certificate against the configured CAs and name.
func (d *destination) dial(ctx context.Context) (net.Conn, error) {
	addr := net.JoinHostPort(d.cfg.Server, strconv.Itoa(d.cfg.Port))
	dl := net.Dialer{Timeout: dialTimeout}
	switch d.cfg.Transport {
	case "udp":
		return dl.DialContext(ctx, "udp", addr)
	case "tcp":
		return dl.DialContext(ctx, "tcp", addr)
	}
	tc, err := d.tlsConfig()
	if err != nil {
		return nil, err
	}
	td := tls.Dialer{NetDialer: &dl, Config: tc}
	hctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	return td.DialContext(hctx, "tcp", addr)
}

// tlsConfig is read at every connection, so that a renewed CA or client
// certificate is used from the next one on.
func (d *destination) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{ServerName: d.cfg.ServerName, MinVersion: tls.VersionTLS12}
	if d.cfg.CA != "" {
		pem, err := os.ReadFile(d.cfg.CA)
		if err != nil {
			return nil, fmt.Errorf("syslog: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("syslog: CA %s: no certificate in it", d.cfg.CA)
		}
		tc.RootCAs = pool
	}
	if d.cfg.Cert != "" {
		cert, err := tls.LoadX509KeyPair(d.cfg.Cert, d.cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("syslog: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

var errPeerClosed = errors.New("the server closed the connection")

// pump sends what is queued until the connection fails or ctx ends.
func (d *destination) pump(ctx context.Context, conn net.Conn) error {
	stream := d.cfg.Transport != "udp"
	closed := make(chan struct{})
	if stream {
		// A syslog server sends nothing: a read that returns means it
		// closed the connection (or sent close_notify), and nothing more
		// may be written to it.
		go func() {
			defer close(closed)
			var b [512]byte
			for {
				if _, err := conn.Read(b[:]); err != nil {
					return
				}
			}
		}()
	}
	// A write blocked on a server that does not read gets closeTimeout
	// once the service stops.
	stopWrites := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Now().Add(closeTimeout)) })
	defer stopWrites()
	failed := false
	defer func() {
		// On shutdown what is queued gets a moment; Close sends TLS's
		// close_notify.
		if ctx.Err() != nil && !failed {
			conn.SetWriteDeadline(time.Now().Add(closeTimeout))
			for {
				batch := d.take(batchMax)
				if len(batch) == 0 || d.write(conn, batch, stream, closed) != nil {
					break
				}
			}
		}
		conn.Close()
		if stream {
			<-closed
		}
	}()
	for {
		batch := d.take(batchMax)
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-closed:
				return errPeerClosed
			case <-d.wake:
				continue
			}
		}
		if ctx.Err() == nil {
			conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
		if err := d.write(conn, batch, stream, closed); err != nil {
			d.putBack(batch)
			failed = true
			return err
		}
	}
}

// write sends one batch: framed in one write over a stream, one datagram
// each over UDP.
func (d *destination) write(conn net.Conn, batch [][]byte, stream bool, closed <-chan struct{}) error {
	if !stream {
		var lastErr error
		for _, rec := range batch {
			if _, err := conn.Write(rec); err != nil {
				// UDP has no connection to lose: an ICMP error from an
				// earlier datagram is noted, and sending goes on.
				lastErr = err
			}
		}
		d.sentOK(len(batch))
		if lastErr != nil {
			d.setState(stateUp, fmt.Errorf("udp: %w", lastErr))
		}
		return nil
	}
	select {
	case <-closed:
		return errPeerClosed
	default:
	}
	n := 0
	for _, rec := range batch {
		n += len(rec) + 8
	}
	buf := make([]byte, 0, n)
	for _, rec := range batch {
		buf = Frame(buf, rec)
	}
	if _, err := conn.Write(buf); err != nil {
		return err
	}
	d.sentOK(len(batch))
	return nil
}
