//go:build e2e

package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/status"
)

// seed puts n messages into a Dovecot user's Maildir, as delivery would.
func seed(t *testing.T, homes, user, tag string, n int) []string {
	t.Helper()
	return seedFolder(t, homes, user, "", tag, n)
}

// seedFolder seeds an IMAP folder other than INBOX (Maildir++: .Folder).
func seedFolder(t *testing.T, homes, user, folder, tag string, n int) []string {
	t.Helper()
	md := filepath.Join(homes, user, "Maildir")
	if folder != "" {
		os.MkdirAll(md, 0o700)
		os.Chown(md, 65534, 65534)
		md = filepath.Join(md, "."+folder)
	}
	for _, d := range []string{"", "new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
		os.Chown(filepath.Join(md, d), 65534, 65534)
	}
	var msgs []string
	for i := range n {
		m := fmt.Sprintf("Return-Path: <sender%d@partner.test>\nFrom: sender%d@partner.test\nTo: %s\nSubject: %s %d\nMessage-ID: <%s-%d@test>\n\nbody of %s %d\n.line starting with a dot\n",
			i, i, user, tag, i, tag, i, tag, i)
		f := filepath.Join(md, "new", fmt.Sprintf("%d.%s%d.seed", time.Now().Unix(), tag, i))
		if err := os.WriteFile(f, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(f, 65534, 65534)
		msgs = append(msgs, m)
	}
	return msgs
}

func mailboxCount(homes, user string) int {
	n := 0
	for _, d := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(homes, user, "Maildir", d))
		n += len(ents)
	}
	return n
}

// countIDs counts, per Message-ID matching re, the messages a sink holds.
func countIDs(dir string, re *regexp.Regexp) map[string]int {
	out := map[string]int{}
	for _, d := range dumps(dir) {
		if m := re.FindString(d); m != "" {
			out[m]++
		}
	}
	return out
}

// pollSettled asks every account to poll now and waits until each has
// finished a poll begun after the request and the queue has handed on all
// it took: anything collected twice is at the sink by then.
func pollSettled(t *testing.T, w *netWorld) {
	t.Helper()
	since := time.Now()
	if out, err := gatehouseCmd(t, w, "fetch", "now"); err != nil {
		t.Fatalf("fetch now: %v: %s", err, out)
	}
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err := gatehouseCmd(t, w, "fetch", "status", "--format", "json")
		var st []status.FetchAccount
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			last = out
			continue
		}
		polled := true
		for _, a := range st {
			polled = polled && a.LastPoll.After(since)
		}
		q, err := gatehouseCmd(t, w, "queue", "list", "--format", "json")
		var list []json.RawMessage
		if err != nil || json.Unmarshal([]byte(q), &list) != nil {
			last = q
			continue
		}
		if polled && len(list) == 0 {
			return
		}
		last = out + q
	}
	t.Fatalf("no settled poll after fetch now within 60s; last:\n%s", last)
}

func writeSecret(t *testing.T, dir, name, pw string) string {
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// POP3S (delete) and POP3 with STLS (keep) against Dovecot; a wrong
// password and an untrusted certificate fail their own accounts only.
func TestFetchPOP3(t *testing.T) {
	w := newMailWorld(t)
	homes := w.dovecot(t, map[string]string{"helpdesk": "hpass", "archive": "apass"})
	intlSink := w.sink(t, w.intl, "10.88.0.1:25")
	helpdesk := seed(t, homes, "helpdesk", "fh", 20)
	seed(t, homes, "archive", "fa", 5)
	// One message larger than the relay accepts: it must stay on the server.
	big := filepath.Join(homes, "helpdesk", "Maildir", "new", "1.huge.seed")
	os.WriteFile(big, []byte("Message-ID: <huge@test>\nSubject: huge\n\n"+strings.Repeat("x", 1000)+strings.Repeat("\n"+strings.Repeat("y", 500), 300)+"\n"), 0o600)
	os.Chown(big, 65534, 65534)
	cfg := fmt.Sprintf(`
hostname: gw
smtp:
  hostname: mx.example.test
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: none}
  limits: {message_size: 100KiB}
fetch:
  - {name: helpdesk, protocol: pop3s, server: 10.88.0.1, user: helpdesk, password_file: %[1]s/h, deliver_to: helpdesk@example.test, ca_file: %[2]s, poll: 1m}
  - {name: archive, protocol: pop3, server: 10.88.0.1, user: archive, password_file: %[1]s/a, deliver_to: archive@example.test, keep: true, ca_file: %[2]s, poll: 1m}
  - {name: badpass, protocol: pop3s, server: 10.88.0.1, user: helpdesk, password_file: %[1]s/wrong, deliver_to: x@example.test, ca_file: %[2]s}
  - {name: untrusted, protocol: pop3s, server: 10.88.0.1, user: archive, password_file: %[1]s/a, deliver_to: x@example.test}
`, w.dir, w.ca)
	writeSecret(t, w.dir, "h", "hpass")
	writeSecret(t, w.dir, "a", "apass")
	writeSecret(t, w.dir, "wrong", "nope")
	w.gatehouse(t, cfg)

	re := regexp.MustCompile(`<f[ha]-\d+@test>`)
	deadline := time.Now().Add(60 * time.Second)
	for len(countIDs(intlSink, re)) < 25 {
		if time.Now().After(deadline) {
			t.Fatalf("collected %d of 25 messages", len(countIDs(intlSink, re)))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := mailboxCount(homes, "helpdesk"); n != 1 {
		t.Errorf("helpdesk mailbox (delete mode) holds %d messages, want only the one too large", n)
	}
	if n := mailboxCount(homes, "archive"); n != 5 {
		t.Errorf("archive mailbox (keep mode) holds %d messages, want 5", n)
	}
	// Byte for byte, after our Received header.
	d := waitDump(t, intlSink, time.Second, "<fh-7@test>")
	if !strings.Contains(d, helpdesk[7]) {
		t.Errorf("message changed on the way:\n%s\nwant it to contain:\n%s", d, helpdesk[7])
	}
	if !strings.Contains(d, "by mx.example.test (Gatehouse) with POP3S id") || !strings.Contains(d, "(account helpdesk, uid ") {
		t.Errorf("no Received header naming the account:\n%s", d)
	}

	// Polling again collects nothing twice (keep mode remembers).
	pollSettled(t, w.netWorld)
	for id, n := range countIDs(intlSink, re) {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}

	out, err := gatehouseCmd(t, w.netWorld, "fetch", "status", "--format", "json")
	if err != nil {
		t.Fatalf("fetch status: %v: %s", err, out)
	}
	var st []status.FetchAccount
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	byName := map[string]status.FetchAccount{}
	for _, a := range st {
		byName[a.Name] = a
	}
	if a := byName["helpdesk"]; a.Collected != 20 || a.LastError != "" || len(a.TooLarge) != 1 {
		t.Errorf("helpdesk: %+v", a)
	}
	if a := byName["archive"]; a.Collected != 5 || a.LastError != "" || a.OnServer != 5 {
		t.Errorf("archive: %+v", a)
	}
	if a := byName["badpass"]; !strings.Contains(a.LastError, "uthentication failed") {
		t.Errorf("badpass: %+v", a)
	}
	if a := byName["untrusted"]; !strings.Contains(a.LastError, "certificate") {
		t.Errorf("untrusted: %+v", a)
	}
	noDump(t, intlSink, "<huge@test>")
	// The service publishes its status line every two seconds.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		out, _ = gatehouseCmd(t, w.netWorld, "status")
		if strings.Contains(out, "fetch badpass: ERROR") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("status does not show the failing account:\n%s", out)
			break
		}
	}
}

// kill -9 the relay at random moments while it collects 2,000 messages, 20
// times; the next hop is down meanwhile, so that only the collection is
// tested (a delivery cut between the peer's 250 and its record is SMTP's
// own duplicate, counted in TestSMTPDurabilityKill9). Then every message
// arrives exactly once and the mailbox is empty.
func TestFetchKill9ExactlyOnce(t *testing.T) {
	for _, proto := range []string{"pop3s", "imaps"} {
		t.Run(proto, func(t *testing.T) { fetchKill9(t, proto) })
	}
}

func fetchKill9(t *testing.T, proto string) {
	w := newMailWorld(t)
	homes := w.dovecot(t, map[string]string{"bulk": "bpass"})
	const total = 2000
	seed(t, homes, "bulk", "fb", total)
	writeSecret(t, w.dir, "b", "bpass")
	runDir := filepath.Join(w.dir, "run")
	cfg := w.config(t, fmt.Sprintf(`
hostname: gw
smtp:
  hostname: mx.example.test
  listen: {smtp: "127.0.0.1:2525", submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: none}
  queue: {min_backoff: 1s, max_backoff: 2s}
fetch:
  - {name: bulk, protocol: %s, server: 10.88.0.1, user: bulk, password_file: %s/b, deliver_to: bulk@example.test, ca_file: %s, poll: 10s}
`, proto, w.dir, w.ca))
	var relay *exec.Cmd
	start := func() {
		t.Helper()
		relay = startRelay(t, w.appl, cfg, runDir, filepath.Join(w.dir, "relay.log"))
	}
	t.Cleanup(func() {
		if relay != nil {
			relay.Process.Kill()
			relay.Wait()
		}
		if t.Failed() {
			t.Logf("relay log (tail):\n%s", tail(w.log("relay.log"), 60))
		}
	})
	start()
	during := 0 // kills while messages were still on the server
	for range 20 {
		// Short lives: a collection that runs at full speed between
		// kills would empty the mailbox before most of them.
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		if mailboxCount(homes, "bulk") > 0 {
			during++
		}
		relay.Process.Signal(syscall.SIGKILL)
		relay.Wait()
		start()
	}
	deadline := time.Now().Add(3 * time.Minute)
	for mailboxCount(homes, "bulk") > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still in the mailbox", mailboxCount(homes, "bulk"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	sink := w.sink(t, w.intl, "10.88.0.1:25")
	// The relay may still be coming back from the last kill: ask until
	// its control socket answers (a flush twice is still one flush).
	askUntil(t, w.appl, "the relay's control socket", func() error {
		if out, err := exec.Command(gatehouseBinary(t), "queue", "flush", "--socket", filepath.Join(runDir, "control.sock")).CombinedOutput(); err != nil {
			return fmt.Errorf("queue flush: %v: %s", err, out)
		}
		return nil
	})
	re := regexp.MustCompile(`<fb-\d+@test>`)
	deadline = time.Now().Add(3 * time.Minute)
	for {
		ids := countIDs(sink, re)
		if len(ids) == total {
			time.Sleep(2 * time.Second) // anything delivered twice would be here by now
			dups := 0
			for _, n := range countIDs(sink, re) {
				dups += n - 1
			}
			if dups > 0 {
				t.Fatalf("%d duplicates among %d messages", dups, total)
			}
			if during < 10 {
				t.Fatalf("only %d of the 20 kills came while the collection ran; the test did not test much", during)
			}
			t.Logf("%d of 20 kills during the collection: all %d messages delivered exactly once; mailbox empty", during, total)
			return
		}
		if time.Now().After(deadline) {
			q, _ := exec.Command(gatehouseBinary(t), "queue", "list", "--socket", filepath.Join(runDir, "control.sock")).CombinedOutput()
			t.Fatalf("%d of %d messages arrived; the queue:\n%s\nthe sink's log:\n%s", len(ids), total, tail(string(q), 20), tail(w.log(filepath.Base(sink)+".log"), 20))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// IMAPS (delete), IMAP with STARTTLS (keep) and IDLE against Dovecot.
func TestFetchIMAP(t *testing.T) {
	w := newMailWorld(t)
	homes := w.dovecot(t, map[string]string{"inbox": "ipass", "keeper": "kpass", "idler": "dpass"})
	intlSink := w.sink(t, w.intl, "10.88.0.1:25")
	inbox := seed(t, homes, "inbox", "fi", 30)
	seed(t, homes, "keeper", "fk", 5)
	seedFolder(t, homes, "keeper", "Archive", "fka", 4) // ids of two folders, kept side by side
	seed(t, homes, "idler", "fd", 1)
	writeSecret(t, w.dir, "i", "ipass")
	writeSecret(t, w.dir, "k", "kpass")
	writeSecret(t, w.dir, "d", "dpass")
	w.gatehouse(t, fmt.Sprintf(`
hostname: gw
smtp:
  hostname: mx.example.test
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: none}
fetch:
  - {name: inbox, protocol: imaps, server: 10.88.0.1, user: inbox, password_file: %[1]s/i, deliver_to: inbox@example.test, ca_file: %[2]s, poll: 1m}
  - {name: keeper, protocol: imap, server: 10.88.0.1, user: keeper, password_file: %[1]s/k, deliver_to: keeper@example.test, keep: true, folders: [INBOX, Archive], ca_file: %[2]s, poll: 1m}
  - {name: idler, protocol: imaps, server: 10.88.0.1, user: idler, password_file: %[1]s/d, deliver_to: idler@example.test, idle: true, ca_file: %[2]s, poll: 1h}
`, w.dir, w.ca))
	re := regexp.MustCompile(`<f(i|k|ka|d)-\d+@test>`)
	deadline := time.Now().Add(60 * time.Second)
	for len(countIDs(intlSink, re)) < 40 {
		if time.Now().After(deadline) {
			t.Fatalf("collected %d of 40 messages", len(countIDs(intlSink, re)))
		}
		time.Sleep(200 * time.Millisecond)
	}
	d := waitDump(t, intlSink, time.Second, "<fi-3@test>")
	if !strings.Contains(d, inbox[3]) || !strings.Contains(d, "with IMAPS id") {
		t.Errorf("message changed on the way, or no Received header:\n%s", d)
	}
	if n := mailboxCount(homes, "inbox"); n != 0 {
		t.Errorf("inbox (delete mode) still holds %d messages", n)
	}
	if n := mailboxCount(homes, "keeper"); n != 5 {
		t.Errorf("keeper (keep mode) holds %d messages, want 5", n)
	}

	// New mail while the account waits in IDLE: collected at once, not at
	// the next poll an hour later.
	// No pause first: mail that comes in at any moment after the first
	// collection is taken at once, whether the account is in IDLE yet or
	// not.
	start := time.Now()
	seed(t, homes, "idler", "fdnew", 1)
	waitDump(t, intlSink, 20*time.Second, "<fdnew-0@test>")
	t.Logf("a message appended during IDLE reached the sink after %v", time.Since(start).Round(time.Millisecond))

	pollSettled(t, w.netWorld)
	for id, n := range countIDs(intlSink, re) {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	out, _ := gatehouseCmd(t, w.netWorld, "fetch", "status")
	if strings.Contains(out, "FAILING") {
		t.Errorf("fetch status:\n%s", out)
	}
}

// A large mailbox is collected in sessions of 2,000 new messages, each
// ending in a QUIT that commits its deletions: the mailbox shrinks while
// it is collected, and a poll cut short leaves little to delete again.
func TestFetchPOP3LargeMailboxInSessions(t *testing.T) {
	w := newMailWorld(t)
	homes := w.dovecot(t, map[string]string{"big": "gpass"})
	intlSink := w.sink(t, w.intl, "10.88.0.1:25")
	const total = 4500
	seed(t, homes, "big", "fl", total)
	writeSecret(t, w.dir, "g", "gpass")
	w.gatehouse(t, fmt.Sprintf(`
hostname: gw
smtp:
  hostname: mx.example.test
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: none}
fetch:
  - {name: big, protocol: pop3s, server: 10.88.0.1, user: big, password_file: %s/g, deliver_to: big@example.test, ca_file: %s, poll: 1h}
`, w.dir, w.ca))
	re := regexp.MustCompile(`<fl-\d+@test>`)
	deadline := time.Now().Add(2 * time.Minute)
	for len(countIDs(intlSink, re)) < total || mailboxCount(homes, "big") > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d at the sink, %d left in the mailbox", len(countIDs(intlSink, re)), total, mailboxCount(homes, "big"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for id, n := range countIDs(intlSink, re) {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	// Dovecot logs each session's retrievals and deletions at its end.
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(homes), "dovecot.log"))
	sessions := regexp.MustCompile(`pop3\(big\).*Logged out top=0/0, retr=(\d+)/\d+, del=(\d+)/\d+`).FindAllStringSubmatch(string(b), -1)
	var got []string
	for _, s := range sessions {
		got = append(got, s[1]+"/"+s[2])
	}
	if want := []string{"2000/2000", "2000/2000", "500/500"}; !slices.Equal(got, want) {
		t.Errorf("sessions (retrieved/deleted): %v, want %v", got, want)
	}
}
