package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Many deliveries finishing at once each get their line on disk, through
// shared fsyncs; a prune running meanwhile loses none of them.
func TestFetchLogGroupCommitAndPrune(t *testing.T) {
	s, _, _ := OpenStore(t.TempDir())
	defer s.Close()
	l := s.fetchLog("acct")
	if err := l.append("old-1\n"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 50 {
				if err := l.append(fmt.Sprintf("u%d-%d\n", g, i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 { // keeps every line but old-1 (and any not yet written)
			s.PruneSeen("acct", func(id string) bool { return id != "old-1" })
		}
	})
	wg.Wait()
	got, err := s.Seen("acct")
	if err != nil {
		t.Fatal(err)
	}
	for g := range 20 {
		for i := range 50 {
			if id := fmt.Sprintf("u%d-%d", g, i); !got[id] {
				t.Errorf("%s acknowledged as written but lost", id)
			}
		}
	}
	if got["old-1"] || len(got) != 1000 {
		t.Errorf("%d ids, old-1 %v; want the 1000 new ones", len(got), got["old-1"])
	}
}

// A collected message's id is logged when its batch commits; leaving the
// queue then costs no log write, and the id stays known across a restart.
func TestCollectedIDsLoggedAtCommit(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	var ws []*Writer
	var envs []*Envelope
	for i := range 3 {
		w, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "Subject: %d\r\n\r\nbody\r\n", i)
		ws = append(ws, w)
		envs = append(envs, &Envelope{From: "a@example.com", Rcpts: []Rcpt{{Addr: "b@example.com"}}, Dedup: Dedup{Set: "acct", Key: fmt.Sprintf("uid%d", i)}})
	}
	if err := s.CommitBatch(ws, envs); err != nil {
		t.Fatal(err)
	}
	log := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "fetched", "acct"))
		return string(b)
	}
	if got := log(); got != "uid0\nuid1\nuid2\n" {
		t.Fatalf("fetched log after the commit: %q", got)
	}
	if err := s.Remove(envs[1].ID); err != nil {
		t.Fatal(err)
	}
	if got := log(); got != "uid0\nuid1\nuid2\n" {
		t.Errorf("Remove wrote the log again: %q", got)
	}
	s.Close()
	s2, loaded, _ := OpenStore(dir)
	defer s2.Close()
	got, _ := s2.Seen("acct")
	if len(loaded) != 2 || !got["uid0"] || !got["uid1"] || !got["uid2"] {
		t.Errorf("after a restart: %d queued, fetched %v", len(loaded), got)
	}
}

// A torn last line (a power cut in mid-write) does not swallow the next id.
func TestFetchLogTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	defer s.Close()
	if err := os.WriteFile(filepath.Join(dir, "fetched", "acct"), []byte("uid1\nui"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.fetchLog("acct").append("uid3\n"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Seen("acct")
	if err != nil {
		t.Fatal(err)
	}
	if !got["uid1"] || !got["uid3"] {
		t.Errorf("fetched after a torn tail: %v", got)
	}
}
