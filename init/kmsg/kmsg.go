// Package kmsg follows the kernel's log (/dev/kmsg) into a ring, so that
// `logs kernel` on the console shows what dmesg would.
package kmsg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gatehouse/init/logring"
)

// Follow copies kernel log records into ring, and hands them to feed (when
// not nil), until ctx ends.
func Follow(ctx context.Context, ring *logring.Ring, feed *logring.Feed) error {
	f, err := os.Open("/dev/kmsg")
	if err != nil {
		return fmt.Errorf("kmsg: %w", err)
	}
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	r := bufio.NewReaderSize(f, 8192)
	for {
		// Each read returns one record: "prio,seq,usec,flags;message\n".
		line, err := r.ReadString('\n')
		if errors.Is(err, syscall.EPIPE) { // records were overwritten before we read them
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kmsg: read: %w", err)
		}
		if s, rec, ok := parse(line); ok {
			ring.Add(s)
			rec.Time = time.Now()
			feed.Publish(rec)
		}
	}
}

// format turns a /dev/kmsg record into "[seconds] message".
func format(rec string) (string, bool) {
	s, _, ok := parse(rec)
	return s, ok
}

// parse turns a /dev/kmsg record into "[seconds] message", and into a
// feed record with the message and its severity (the low three bits of
// the record's priority).
func parse(rec string) (string, logring.Record, bool) {
	head, msg, ok := strings.Cut(strings.TrimRight(rec, "\n"), ";")
	if !ok || strings.HasPrefix(rec, " ") { // continuation lines start with a space
		return "", logring.Record{}, false
	}
	f := strings.Split(head, ",")
	if len(f) < 3 {
		return "", logring.Record{}, false
	}
	usec, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return "", logring.Record{}, false
	}
	r := logring.Record{Service: Name, Line: msg}
	if prio, err := strconv.Atoi(f[0]); err == nil && prio >= 0 {
		sev := prio & 7
		r.Severity = &sev
	}
	return fmt.Sprintf("[%5d.%06d] %s", usec/1e6, usec%1e6, msg), r, true
}

// Name is the name under which the kernel's log is served and forwarded.
const Name = "kernel"
