package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// LogHandler formats records for a serial console: time since boot, the
// subsystem (or service), the message, then the other attributes.
//
//	[   0.153] supervisor: service started service=kmsg pid=42
type LogHandler struct {
	out   *lockedWriter
	start time.Time
	level slog.Level
	attrs []slog.Attr
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLogHandler writes to w, timing records from start.
func NewLogHandler(w io.Writer, start time.Time, level slog.Level) *LogHandler {
	return &LogHandler{out: &lockedWriter{w: w}, start: start, level: level}
}

// Enabled implements slog.Handler.
func (h *LogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

// WithAttrs implements slog.Handler.
func (h *LogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &h2
}

// WithGroup implements slog.Handler; groups are flattened.
func (h *LogHandler) WithGroup(string) slog.Handler { return h }

// Handle implements slog.Handler.
func (h *LogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "[%8.3f] ", r.Time.Sub(h.start).Seconds())
	var subsystem, service string
	var rest []slog.Attr
	take := func(a slog.Attr) bool {
		switch a.Key {
		case "subsystem":
			subsystem = a.Value.String()
		case "service":
			service = a.Value.String()
		default:
			rest = append(rest, a)
		}
		return true
	}
	for _, a := range h.attrs {
		take(a)
	}
	r.Attrs(take)
	if subsystem != "" {
		b.WriteString(subsystem + ": ")
	}
	if r.Level >= slog.LevelWarn {
		b.WriteString(r.Level.String() + " ")
	}
	b.WriteString(r.Message)
	if service != "" {
		rest = append([]slog.Attr{slog.String("service", service)}, rest...)
	}
	for _, a := range rest {
		v := a.Value.String()
		if strings.ContainsAny(v, " \t\"") {
			v = fmt.Sprintf("%q", v)
		}
		b.WriteString(" " + a.Key + "=" + v)
	}
	b.WriteString("\n")
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := io.WriteString(h.out.w, b.String())
	return err
}

// Write lets other output (the ready line, the shell) share the lock.
func (h *LogHandler) Write(p []byte) (int, error) {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	return h.out.w.Write(p)
}
