// Package hostile is what the tests of the clients that face the network
// (SMTP, POP3, IMAP) share: how much a hostile peer offers to send, far
// more than any bound the clients keep, and how much the process allocated
// while it did, which shows a client that read it all.
package hostile

import "runtime"

// Stream is how much a hostile peer in these tests offers to send.
const Stream = 200 << 20

// Allocated runs f and returns the bytes the process allocated meanwhile.
func Allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
