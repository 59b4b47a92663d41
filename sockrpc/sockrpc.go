// Package sockrpc is the appliance's one way to ask a process something
// over a Unix socket: one JSON request per connection, one JSON answer,
// and, for an answer that says so (Streamer), JSON lines after it until
// either side hangs up.
// PID 1's control socket and the services' sockets all use it, so that
// every one of them checks who calls, bounds what it reads, and survives a
// request that panics.
package sockrpc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

// MaxRequest bounds one request: a verb and a few names, never more than
// a few hundred bytes.
const MaxRequest = 64 << 10

// Timeout is how long a server gives one connection, request and answer.
const Timeout = 30 * time.Second

// Listen makes the Unix socket at path, replacing a stale one, mode 0600.
// A directory it has to make is mode 0700; one that is there stays as it
// is (the run directory, say, which the services share).
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sockrpc: %w", err)
	}
	os.Remove(path) // a stale socket from a previous run
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("sockrpc: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("sockrpc: chmod %s: %w", path, err)
	}
	return l, nil
}

// Server answers requests of type Req with answers of type Resp. Resp
// should have an `error` field (omitempty): a refused or failed request is
// answered {"error": "..."}, whatever Resp is.
type Server[Req, Resp any] struct {
	// Answer carries out one request. A panic in it is logged and
	// answered as an error; the server goes on serving.
	Answer func(Req) Resp
	Log    *slog.Logger
	// UID is the one user besides root who may call: the kernel's record
	// of the caller (SO_PEERCRED) is checked on every connection, so a
	// socket file whose mode was loosened, or that another user reached in
	// the moment between bind and chmod, still lets no one else in.
	UID uint32
}

// NewServer serves answer to root and to the user this process runs as
// (on the appliance: root for PID 1, the relay's own user for the relay,
// which no one else runs as; in host mode without root, the user who
// started it).
func NewServer[Req, Resp any](answer func(Req) Resp, log *slog.Logger) *Server[Req, Resp] {
	return &Server[Req, Resp]{Answer: answer, Log: log, UID: uint32(os.Geteuid())}
}

// Serve answers connections on l until ctx ends; then it closes l.
func (s *Server[Req, Resp]) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sockrpc: accept: %w", err)
		}
		go s.serveConn(ctx, c)
	}
}

// errorResponse is the answer to a refused or failed request.
type errorResponse struct {
	Error string `json:"error"`
}

// ServeConn answers the one request on c and closes it.
func (s *Server[Req, Resp]) ServeConn(c net.Conn) { s.serveConn(context.Background(), c) }

func (s *Server[Req, Resp]) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(Timeout))
	reply := func(v any) {
		if err := json.NewEncoder(c).Encode(v); err != nil {
			s.Log.Debug("answer not delivered", "err", err)
		}
	}
	cred, err := PeerCred(c)
	if err != nil {
		s.Log.Error("caller unknown; refused", "err", err)
		reply(errorResponse{Error: "control: refused: " + err.Error()})
		return
	}
	if cred.Uid != 0 && cred.Uid != s.UID {
		s.Log.Warn("caller refused", "uid", cred.Uid, "pid", cred.Pid)
		reply(errorResponse{Error: fmt.Sprintf("control: refused: uid %d may not use this socket (only root may)", cred.Uid)})
		return
	}
	in := &io.LimitedReader{R: c, N: MaxRequest + 1}
	var req Req
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		if in.N <= 0 {
			s.Log.Warn("request too large; refused", "uid", cred.Uid, "pid", cred.Pid)
			reply(errorResponse{Error: fmt.Sprintf("control: request larger than %d KiB; refused", MaxRequest>>10)})
			return
		}
		reply(errorResponse{Error: "bad request: " + err.Error()})
		return
	}
	var resp any
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.Log.Error("request panicked", "panic", fmt.Sprint(r), "request", fmt.Sprintf("%+v", req), "stack", string(debug.Stack()))
				resp = errorResponse{Error: fmt.Sprintf("internal error: %v", r)}
			}
		}()
		resp = s.Answer(req)
	}()
	reply(resp)
	if st, ok := resp.(Streamer); ok {
		if f := st.Streams(); f != nil {
			s.stream(ctx, c, f)
		}
	}
}

// StreamWriteTimeout is how long a streamed write may wait for a caller
// that does not read before the stream ends.
const StreamWriteTimeout = 10 * time.Second

// Streamer is an answer that may go on: when Streams returns a function,
// the server runs it once the answer is written, and it sends JSON lines
// until it returns or its ctx ends. ctx ends when the caller hangs up
// (anything it sends after its request counts as hanging up) or the
// server stops.
type Streamer interface {
	Streams() StreamFunc
}

// StreamFunc sends a stream's lines on s.
type StreamFunc func(ctx context.Context, s *Stream) error

// Stream is the server's end of a streamed answer. Send buffers; Flush
// writes, waiting at most StreamWriteTimeout for the caller to read.
type Stream struct {
	c   net.Conn
	w   *bufio.Writer
	enc *json.Encoder
}

// Send adds one JSON line to the stream.
func (s *Stream) Send(v any) error {
	s.c.SetWriteDeadline(time.Now().Add(StreamWriteTimeout))
	return s.enc.Encode(v)
}

// Flush writes what Send buffered.
func (s *Stream) Flush() error {
	s.c.SetWriteDeadline(time.Now().Add(StreamWriteTimeout))
	return s.w.Flush()
}

func (s *Server[Req, Resp]) stream(ctx context.Context, c net.Conn, f StreamFunc) {
	c.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The caller says nothing more: a read that returns means it hung up.
		var b [1]byte
		c.Read(b[:])
		cancel()
	}()
	w := bufio.NewWriterSize(c, 64<<10)
	st := &Stream{c: c, w: w, enc: json.NewEncoder(w)}
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.Log.Error("stream panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return f(ctx, st)
	}()
	if err == nil {
		err = st.Flush()
	}
	if err != nil && ctx.Err() == nil {
		s.Log.Debug("stream ended", "err", err)
	}
}

// PeerCred returns the credentials of the process that connected c, as
// the kernel recorded them at connect(2).
func PeerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a Unix socket (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	return cred, nil
}

// DialError says the socket could not be reached: nothing is listening
// there (Missing), or the connection failed otherwise.
type DialError struct {
	Path string
	Err  error
}

func (e *DialError) Error() string { return e.Err.Error() } // names the path already
func (e *DialError) Unwrap() error { return e.Err }

// Missing says no socket file is there: the process that serves it is
// not running.
func (e *DialError) Missing() bool { return errors.Is(e.Err, os.ErrNotExist) }

// AnswerError is the error field of an answer: the server heard the
// request and refused it, or failed to carry it out.
type AnswerError struct{ Message string }

func (e *AnswerError) Error() string { return e.Message }

// Call sends req to the socket at path and decodes the answer into resp,
// giving up after timeout. An answer with an `error` field is returned as
// an *AnswerError, with resp decoded all the same. A socket that cannot be
// reached is a *DialError.
func Call(path string, timeout time.Duration, req, resp any) error {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return &DialError{Path: path, Err: err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	var raw json.RawMessage
	if err := json.NewDecoder(c).Decode(&raw); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if err := json.Unmarshal(raw, resp); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	var e errorResponse
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return &AnswerError{Message: e.Error}
	}
	return nil
}

// MaxStreamLine bounds one line of a streamed answer.
const MaxStreamLine = 1 << 20

// Follow sends req to the socket at path, decodes the answer into resp as
// Call does, and then, if the server streams, hands each further line to
// each until ctx ends (Follow returns nil), the server ends the stream
// (io.EOF) or each returns an error (that error).
func Follow(ctx context.Context, path string, req, resp any, each func(line []byte) error) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return &DialError{Path: path, Err: err}
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(Timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), MaxStreamLine)
	if !sc.Scan() {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("read answer: %w", orEOF(sc.Err()))
	}
	if err := json.Unmarshal(sc.Bytes(), resp); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	var e errorResponse
	if json.Unmarshal(sc.Bytes(), &e) == nil && e.Error != "" {
		return &AnswerError{Message: e.Error}
	}
	c.SetDeadline(time.Time{})
	for sc.Scan() {
		if err := each(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("stream: %w", orEOF(sc.Err()))
}

func orEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}
