// Package testlog is the log a service under test writes while the test
// reads it: a buffer safe for both at once.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer collects what a service logs, from any goroutine.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything logged so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
