package update

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestEFIVar(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := EFIVar(dir, LoaderEntryOneShot); ok || err != nil {
		t.Fatalf("an unset variable: %v %v", ok, err)
	}
	if err := SetEFIVar(dir, LoaderEntryOneShot, "gatehouse-b.conf"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{7, 0, 0, 0}
	for _, c := range "gatehouse-b.conf\x00" {
		want = append(want, byte(c), 0)
	}
	if !bytes.Equal(raw, want) {
		t.Errorf("file: % x\nwant  % x", raw, want)
	}
	if v, ok, err := EFIVar(dir, LoaderEntryOneShot); v != "gatehouse-b.conf" || !ok || err != nil {
		t.Errorf("EFIVar: %q %v %v", v, ok, err)
	}
	// A shorter value replaces the whole of the longer.
	if err := SetEFIVar(dir, LoaderEntryOneShot, "a"); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := EFIVar(dir, LoaderEntryOneShot); v != "a" {
		t.Errorf("after the shorter value: %q", v)
	}
	if err := DeleteEFIVar(dir, LoaderEntryOneShot); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := EFIVar(dir, LoaderEntryOneShot); ok {
		t.Error("still set after DeleteEFIVar")
	}
	if err := DeleteEFIVar(dir, LoaderEntryOneShot); err != nil {
		t.Errorf("deleting an unset variable: %v", err)
	}
}

func TestDecodeEFIString(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want string
		ok   bool
	}{
		{[]byte{6, 0, 0, 0, 'b', 0, '.', 0, 0, 0}, "b.", true},
		{[]byte{6, 0, 0, 0, 'b', 0}, "b", true}, // no NUL, as some firmware writes it
		{[]byte{6, 0, 0, 0}, "", true},
		{[]byte{6, 0, 0}, "", false},
		{[]byte{6, 0, 0, 0, 'b'}, "", false},
	} {
		got, err := decodeEFIString(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("decode % x: %q, %v", c.in, got, err)
		}
	}
}
