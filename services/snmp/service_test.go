package snmp

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The engine ID is made once and kept; boots rises at every start.
func TestBootEngine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snmp")
	id1, b1, err := bootEngine(dir)
	if err != nil {
		t.Fatal(err)
	}
	id2, b2, err := bootEngine(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id1, id2) || b1 != 1 || b2 != 2 {
		t.Errorf("engine % x boots %d, then % x boots %d", id1, b1, id2, b2)
	}
	if id1[0] != 0x80 || id1[4] != 5 || len(id1) != 13 {
		t.Errorf("engine ID % x is not enterprise-based (RFC 3411 format 5)", id1)
	}
	if other, _, _ := bootEngine(filepath.Join(t.TempDir(), "snmp")); bytes.Equal(other, id1) {
		t.Error("two nodes share an engine ID")
	}
	os.WriteFile(filepath.Join(dir, engineFile), []byte(`{"engine_id":"zz","engine_boots":3}`), 0o600)
	if _, _, err := bootEngine(dir); err == nil {
		t.Error("a corrupt engine file was taken")
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter()
	a := netip.MustParseAddr("192.0.2.7")
	now := time.Now()
	n := 0
	for range 100 {
		if l.allow(a, 10, now) {
			n++
		}
	}
	if n != 20 {
		t.Errorf("a burst got %d answers, want 20 (twice the rate)", n)
	}
	if !l.allow(a, 10, now.Add(200*time.Millisecond)) {
		t.Error("no token after 200 ms at 10/s")
	}
	if !l.allow(netip.MustParseAddr("192.0.2.8"), 10, now) {
		t.Error("another source is limited by the first")
	}
}
