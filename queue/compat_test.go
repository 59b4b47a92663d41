package queue

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A queue directory written by the version that kept routes and
// collected-mail records as plain strings loads as it was: routes and
// de-duplication keys typed, their fetched/ log read, and written back in
// the same form.
func TestOldFormatLoads(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"msg", "fetched"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	// As the earlier version wrote them, byte for byte.
	old := func(id, data, env string) {
		var tr [8]byte
		binary.BigEndian.PutUint32(tr[:4], uint32(len(env)))
		copy(tr[4:], trailerMagic)
		if err := os.WriteFile(filepath.Join(dir, "msg", id), []byte(data+env+string(tr[:])), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data := "Subject: old\r\n\r\nbody\r\n"
	old("0001", data, `{"id":"0001","from":"a@example.test","rcpts":[{"addr":"u@example.test","route":"domain:example.test"},`+
		`{"addr":"v@elsewhere.test","route":"connector:cmg"},{"addr":"w@far.test","route":"mx:far.test"}],`+
		`"arrived":"2024-05-01T10:00:00Z","size":22,"source":"smtp"}`)
	old("0002", data, `{"id":"0002","from":"","rcpts":[{"addr":"helpdesk@example.test","route":"domain:example.test"}],`+
		`"arrived":"2024-05-01T10:00:00Z","size":22,"source":"fetch:acct","fetch":"acct/INBOX/1700000000/42"}`)
	if err := os.WriteFile(filepath.Join(dir, "fetched", "acct"), []byte("INBOX/1700000000/41\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	s, loaded, problems := OpenStore(dir)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	defer s.Close()
	if len(loaded) != 2 {
		t.Fatalf("%d messages loaded, want 2", len(loaded))
	}
	byID := map[string]Envelope{}
	for _, l := range loaded {
		byID[l.Envelope.ID] = l.Envelope
	}
	want := []Route{{Domain, "example.test"}, {Connector, "cmg"}, {MX, "far.test"}}
	for i, r := range byID["0001"].Rcpts {
		if r.Route != want[i] {
			t.Errorf("rcpt %d: route %+v, want %+v", i, r.Route, want[i])
		}
	}
	if d := byID["0001"].Dedup; !d.IsZero() {
		t.Errorf("a message from SMTP carries a de-duplication key: %+v", d)
	}
	if d := byID["0002"].Dedup; d != (Dedup{Set: "acct", Key: "INBOX/1700000000/42"}) {
		t.Errorf("de-duplication key %+v", d)
	}
	seen, err := s.Seen("acct")
	if err != nil {
		t.Fatal(err)
	}
	if !seen["INBOX/1700000000/41"] || !seen["INBOX/1700000000/42"] || len(seen) != 2 {
		t.Errorf("seen: %v", seen)
	}

	// Written again as it was read.
	for _, id := range []string{"0001", "0002"} {
		js, err := json.Marshal(byID[id])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "msg", id))
		if !strings.Contains(string(b), string(js)) {
			t.Errorf("%s written back as\n%s\nnot as read:\n%s", id, js, b[len(data):len(b)-8])
		}
	}
	// Leaving the queue, the key goes to the log as a line of its own.
	if err := s.Remove("0002"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "fetched", "acct")); string(b) != "INBOX/1700000000/41\nINBOX/1700000000/42\n" {
		t.Errorf("fetched log: %q", b)
	}
}

// Routes read back as they were written; a kind no version wrote is an
// error, not a route.
func TestRouteText(t *testing.T) {
	for _, s := range []string{"", "domain:example.test", "connector:cmg", "mx:far.test", "mx:[192.0.2.1]"} {
		r, err := ParseRoute(s)
		if err != nil || r.String() != s {
			t.Errorf("ParseRoute(%q) = %+v, %v; String %q", s, r, err, r.String())
		}
	}
	if _, err := ParseRoute("smtp:x"); err == nil {
		t.Error("an unknown kind parsed")
	}
}
