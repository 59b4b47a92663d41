package queue

import (
	"fmt"
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
			s.PruneFetched("acct", func() map[string]bool {
				m := map[string]bool{}
				for g := range 20 {
					for i := range 50 {
						m[fmt.Sprintf("u%d-%d", g, i)] = true
					}
				}
				return m
			}())
		}
	})
	wg.Wait()
	got, err := s.Fetched("acct")
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
