// Package hostile is what the tests of the clients that face the network
// (SMTP, POP3, IMAP) share: how much a hostile peer offers to send, far
// more than any bound the clients keep, sending it, and how much the
// process allocated while it did, which shows a client that read it all.
package hostile

import (
	"io"
	"runtime"
	"sync/atomic"
)

// Stream is how much a hostile peer in these tests offers to send.
const Stream = 200 << 20

// Send writes prefix, then chunks from next until Stream octets of them
// are out or the client went away, and counts what it wrote in sent.
func Send(w io.Writer, prefix string, next func() []byte, sent *atomic.Int64) {
	n, _ := io.WriteString(w, prefix)
	sent.Add(int64(n))
	for written := int64(0); written < Stream; {
		n, err := w.Write(next())
		written += int64(n)
		sent.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// Allocated runs f and returns the bytes the process allocated meanwhile.
func Allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
