package queue

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// A message that leaves the queue leaves a spare in tmp/, which a later
// message is written over once the removal is on disk; the next message carries nothing of the
// old one (the longer old file is cut), and a restart clears the spares.
func TestSpareFileReused(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	first := enqueue(t, s, nil, "a@x.example", strings.Repeat("old secret\r\n", 500), "u@one.example")
	ino := inode(t, filepath.Join(dir, "msg", first))
	if err := s.Remove(first); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "msg", first)); !os.IsNotExist(err) {
		t.Fatalf("msg/%s still there: %v", first, err)
	}
	spares, _ := filepath.Glob(filepath.Join(dir, "tmp", "spare.*"))
	if len(spares) != 1 {
		t.Fatalf("spares %v", spares)
	}

	// Not reused before an fsync of msg/ has put its removal on disk:
	// the message committed meanwhile gets a new file, and its commit's
	// fsync frees the spare for the next.
	between := enqueue(t, s, nil, "a@x.example", "Subject: between\r\n\r\nx\r\n", "u@one.example")
	if got := inode(t, filepath.Join(dir, "msg", between)); got == ino {
		t.Fatal("the spare was written over before its removal from msg/ was synced")
	}
	second := enqueue(t, s, nil, "a@x.example", "Subject: new\r\n\r\nshort\r\n", "u@one.example")
	if got := inode(t, filepath.Join(dir, "msg", second)); got != ino {
		t.Fatalf("second message in inode %d, want the spare %d", got, ino)
	}
	env, err := s.readEnvelope(second)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(&env)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "Subject: new\r\n\r\nshort\r\n" {
		t.Fatalf("reused file reads %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "msg", second)); strings.Contains(readAll(t, filepath.Join(dir, "msg", second)), "old secret") || fi.Size() > 1000 {
		t.Fatal("reused file keeps the old message's bytes")
	}

	// An aborted message's spare is not leaked into msg/.
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "half")
	w.Abort()

	s.Remove(second)
	s.Remove(between)
	s.Close()
	s2, loaded, probs := OpenStore(dir)
	defer s2.Close()
	if len(loaded) != 0 || len(probs) != 0 {
		t.Fatalf("after restart: %d loaded, problems %v", len(loaded), probs)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("tmp/ after restart: %d files", len(ents))
	}
}

func readAll(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A message with a saved state loses it when it leaves; one delivered at
// the first try never had one.
func TestRemoveDropsState(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	defer s.Close()
	id := enqueue(t, s, nil, "a@x.example", "x\r\n", "u@one.example")
	if err := s.SaveState(id, &State{Rcpts: []RcptState{{Attempts: 1}}, NextTry: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", id)); !os.IsNotExist(err) {
		t.Fatalf("state/%s left: %v", id, err)
	}
	// A state from before a restart goes too.
	id = enqueue(t, s, nil, "a@x.example", "x\r\n", "u@one.example")
	s.SaveState(id, &State{Rcpts: []RcptState{{Attempts: 1}}})
	s.Close()
	s2, loaded, _ := OpenStore(dir)
	defer s2.Close()
	if len(loaded) != 1 {
		t.Fatalf("loaded %d", len(loaded))
	}
	s2.Remove(id)
	if _, err := os.Stat(filepath.Join(dir, "state", id)); !os.IsNotExist(err) {
		t.Fatalf("state/%s left after restart: %v", id, err)
	}
}

// A message removed while it is being read (an operator's delete during
// its delivery) is not reused: the reader goes on reading its own bytes,
// never the next message's.
func TestRemovedWhileReadIsNotReused(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	defer s.Close()
	old := strings.Repeat("first message line\r\n", 400)
	id := enqueue(t, s, nil, "a@x.example", old, "u@one.example")
	env, err := s.readEnvelope(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(&env)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 10)
	io.ReadFull(r, head)
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if spares, _ := filepath.Glob(filepath.Join(dir, "tmp", "spare.*")); len(spares) != 0 {
		t.Fatalf("a file still being read became a spare: %v", spares)
	}
	enqueue(t, s, nil, "a@x.example", strings.Repeat("SECOND MESSAGE\r\n", 600), "u@one.example")
	rest, _ := io.ReadAll(r)
	r.Close()
	if got := string(head) + string(rest); got != old {
		t.Fatalf("the reader of the removed message read %d bytes, not its own (%q…)", len(got), got[:min(40, len(got))])
	}
	// Closed, the count is gone: the next removal makes a spare again.
	id2 := enqueue(t, s, nil, "a@x.example", "x\r\n", "u@one.example")
	env2, _ := s.readEnvelope(id2)
	r2, _ := s.Open(&env2)
	r2.Close()
	s.Remove(id2)
	if spares, _ := filepath.Glob(filepath.Join(dir, "tmp", "spare.*")); len(spares) != 1 {
		t.Fatalf("spares after a closed reader's message left: %v", spares)
	}
}

// A large message's file is not kept: spares must not hold much of the
// disk the relay's free-space check counts.
func TestLargeFileIsNotKept(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	defer s.Close()
	id := enqueue(t, s, nil, "a@x.example", strings.Repeat("x", maxSpareSize+1), "u@one.example")
	s.Remove(id)
	if spares, _ := filepath.Glob(filepath.Join(dir, "tmp", "spare.*")); len(spares) != 0 {
		t.Fatalf("a %d-byte file kept as a spare", maxSpareSize)
	}
}
