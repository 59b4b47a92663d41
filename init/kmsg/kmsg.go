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

	"gatehouse/init/logring"
)

// Follow copies kernel log records into ring until ctx ends.
func Follow(ctx context.Context, ring *logring.Ring) error {
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
		if s, ok := format(line); ok {
			ring.Add(s)
		}
	}
}

// format turns a /dev/kmsg record into "[seconds] message".
func format(rec string) (string, bool) {
	head, msg, ok := strings.Cut(strings.TrimRight(rec, "\n"), ";")
	if !ok || strings.HasPrefix(rec, " ") { // continuation lines start with a space
		return "", false
	}
	f := strings.Split(head, ",")
	if len(f) < 3 {
		return "", false
	}
	usec, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("[%5d.%06d] %s", usec/1e6, usec%1e6, msg), true
}
