package logring

import (
	"fmt"
	"slices"
	"testing"
)

func TestRing(t *testing.T) {
	r := New(3)
	if got := r.Last(0); len(got) != 0 {
		t.Errorf("empty ring: %q", got)
	}
	r.Add("a")
	r.Add("b")
	if got := r.Last(0); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("not full: %q", got)
	}
	for i := range 5 {
		r.Add(fmt.Sprint(i))
	}
	if got := r.Last(0); !slices.Equal(got, []string{"2", "3", "4"}) {
		t.Errorf("wrapped: %q", got)
	}
	if got := r.Last(2); !slices.Equal(got, []string{"3", "4"}) {
		t.Errorf("last 2: %q", got)
	}
}
