package queue

import (
	"os"
	"sync"
)

// fetchLog is one set's fetched/<set> file: the de-duplication keys of
// messages that have left the queue. Appends are group-committed:
// whoever finds no write in progress writes and fsyncs every line queued
// so far, and the others wait for that one fsync. Deliveries finish many
// at a time; one fsync each was the largest cost of collecting mail.
type fetchLog struct {
	path string

	mu   sync.Mutex
	cur  *logBatch // lines waiting for the next write
	busy bool      // a write is in progress

	io sync.Mutex // the file: held by the writer, and by readers and the prune
	f  *os.File
}

type logBatch struct {
	buf  []byte
	done chan struct{}
	err  error
}

// append returns once line is on disk.
func (l *fetchLog) append(line string) error {
	l.mu.Lock()
	if l.cur == nil {
		l.cur = &logBatch{done: make(chan struct{})}
	}
	mine := l.cur
	mine.buf = append(mine.buf, line...)
	if l.busy {
		l.mu.Unlock()
		<-mine.done
		return mine.err
	}
	l.busy = true
	// Lead: write batches until none is waiting (ours is the first).
	for l.cur != nil {
		b := l.cur
		l.cur = nil
		l.mu.Unlock()
		b.err = l.write(b.buf)
		close(b.done)
		l.mu.Lock()
	}
	l.busy = false
	l.mu.Unlock()
	return mine.err
}

func (l *fetchLog) write(b []byte) error {
	l.io.Lock()
	defer l.io.Unlock()
	if l.f == nil {
		f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o600)
		if err != nil {
			return err
		}
		// A power cut can leave a torn last line: end it, so that the
		// next id is not glued to it (and lost as an id).
		if st, err := f.Stat(); err == nil && st.Size() > 0 {
			last := make([]byte, 1)
			if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				b = append([]byte("\n"), b...)
			}
		}
		l.f = f
	}
	st, err := l.f.Stat()
	if err != nil {
		l.closeFile()
		return err
	}
	if _, err := l.f.Write(b); err != nil {
		// A partial write (disk full) is cut off again, for the same reason.
		l.f.Truncate(st.Size())
		l.closeFile() // reopened next time, rather than kept broken
		return err
	}
	if err := l.f.Sync(); err != nil {
		l.closeFile()
		return err
	}
	return nil
}

// exclusive runs fn with no write in progress; the file is reopened
// after, since fn may have replaced it.
func (l *fetchLog) exclusive(fn func() error) error {
	l.io.Lock()
	defer l.io.Unlock()
	l.closeFile()
	return fn()
}

func (l *fetchLog) closeFile() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
