// Package logring keeps the most recent lines of a log in memory, for the
// console's and the CLI's `logs`.
package logring

import "sync"

// Ring holds the last N lines added. It is safe for concurrent use.
type Ring struct {
	mu     sync.Mutex
	lines  []string
	next   int
	filled bool
}

// New returns a ring that keeps n lines.
func New(n int) *Ring { return &Ring{lines: make([]string, n)} }

// Add appends a line, dropping the oldest when the ring is full.
func (r *Ring) Add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.filled = true
	}
}

// Last returns up to n of the most recent lines, oldest first; n <= 0 means
// all that are kept.
func (r *Ring) Last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	if r.filled {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}
