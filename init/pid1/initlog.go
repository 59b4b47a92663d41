package pid1

import (
	"bytes"
	"log/slog"
	"os"
	"time"

	"gatehouse/init/logring"
)

// InitLog is the name under which Logs serves PID 1's own log (the
// supervisor's "service started", "service exited; restarting", boot
// steps), and the app-name the syslog service forwards it under.
const InitLog = "init"

// initLines keeps PID 1's own log records as slog's text lines
// (`level=INFO msg="service started" subsystem=supervisor …`, without the
// time) in a ring for `gatehouse logs init`, and hands them to the log
// feed like any service's line. It never blocks: the ring and the feed
// take a line under a short lock.
type initLines struct {
	ring *logring.Ring
	feed *logring.Feed
	pid  int
}

// Write implements io.Writer: slog's text handler writes one record per
// call, newlines within it quoted.
func (w *initLines) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	w.ring.Add(line)
	w.feed.Publish(logring.Record{Service: InitLog, PID: w.pid, Time: time.Now(), Line: line})
	return len(p), nil
}

// initHandler is the slog handler that feeds w, at level and above.
func initHandler(w *initLines, level slog.Level) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
}

func newInitLines(feed *logring.Feed) *initLines {
	return &initLines{ring: logring.New(1000), feed: feed, pid: os.Getpid()}
}
