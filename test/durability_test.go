//go:build e2e

package test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sendOne runs one SMTP transaction and says whether the relay answered
// 250 to the end of data: only then is the message the relay's to keep.
func sendOne(addr string, n int) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	expect := func(code string) bool {
		for {
			l, err := r.ReadString('\n')
			if err != nil || len(l) < 4 {
				return false
			}
			if l[3] != '-' {
				return strings.HasPrefix(l, code)
			}
		}
	}
	say := func(s, code string) bool {
		if _, err := fmt.Fprint(c, s); err != nil {
			return false
		}
		return expect(code)
	}
	body := fmt.Sprintf("Message-ID: <dur-%d@test>\r\nSubject: durability %d\r\n\r\n%s\r\nEND-OF-MESSAGE-%d\r\n", n, n, strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 60), n)
	return expect("220") && say("EHLO load.test\r\n", "250") && say("MAIL FROM:<load@example.test>\r\n", "250") &&
		say("RCPT TO:<u@example.test>\r\n", "250") && say("DATA\r\n", "354") && say(body+".\r\n", "250")
}

// Under load, the relay is killed with SIGKILL at random moments 20 times
// and restarted each time. Every message that got a 250 must reach the sink
// (counted by Message-ID), none may arrive truncated; duplicates (a crash
// between delivery and recording it) are reported.
func TestSMTPDurabilityKill9(t *testing.T) {
	w := newNetWorld(t)
	ns := w.appl
	sinkDir := filepath.Join(w.dir, "sink")
	os.MkdirAll(sinkDir, 0o755)
	w.start(t, ns, "sink.log", "smtp-sink", "-u", "root", "-d", sinkDir+"/m.", "127.0.0.1:2526", "256")
	waitGreeting(t, ns, "127.0.0.1", "2526")
	runDir := filepath.Join(w.dir, "run")
	cfg := w.config(t, `
hostname: gw
smtp:
  hostname: mx.example.test
  listen: {smtp: "127.0.0.1:2525", submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2526", tls: none}
  trusted_networks: [127.0.0.0/8]
  queue: {min_backoff: 1s, max_backoff: 2s}
`)
	var relay *exec.Cmd
	start := func() {
		t.Helper()
		relay = startRelay(t, ns, cfg, runDir, filepath.Join(w.dir, "relay.log"))
		waitGreeting(t, ns, "127.0.0.1", "2525")
	}
	t.Cleanup(func() {
		if relay != nil {
			relay.Process.Kill()
			relay.Wait()
		}
		if t.Failed() {
			t.Logf("relay log (tail):\n%s", tail(w.log("relay.log"), 400))
		}
	})
	start()

	// The load: 16 clients, each sending numbered messages until told to stop.
	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	acked := map[int]bool{}
	sent := 0
	var wg sync.WaitGroup
	var next int
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The whole loop runs on a thread inside the namespace, so
			// its connections are made there.
			inNS(t, ns, func() {
				for ctx.Err() == nil {
					mu.Lock()
					next++
					n := next
					mu.Unlock()
					ok := sendOne("127.0.0.1:2525", n)
					mu.Lock()
					sent++
					if ok {
						acked[n] = true
					}
					mu.Unlock()
					if !ok {
						time.Sleep(20 * time.Millisecond)
					}
				}
			})
		}()
	}
	for i := 0; i < 20; i++ {
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		relay.Process.Signal(syscall.SIGKILL)
		relay.Wait()
		start()
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()

	mu.Lock()
	want := len(acked)
	mu.Unlock()
	if want < 100 {
		t.Fatalf("only %d messages were accepted under load; the test did not test much", want)
	}
	idRe := regexp.MustCompile(`Message-ID: <dur-(\d+)@test>`)
	count := func() (map[int]int, int) {
		seen := map[int]int{}
		truncated := 0
		for _, d := range dumps(sinkDir) {
			m := idRe.FindStringSubmatch(d)
			if m == nil {
				continue
			}
			var n int
			fmt.Sscan(m[1], &n)
			seen[n]++
			if !strings.Contains(d, fmt.Sprintf("END-OF-MESSAGE-%d", n)) {
				truncated++
			}
		}
		return seen, truncated
	}
	deadline := time.Now().Add(90 * time.Second)
	var seen map[int]int
	var truncated int
	for {
		seen, truncated = count()
		missing := 0
		for n := range acked {
			if seen[n] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			var ex []int
			for n := range acked {
				if seen[n] == 0 && len(ex) < 10 {
					ex = append(ex, n)
				}
			}
			t.Fatalf("%d of %d acknowledged messages never reached the sink (e.g. %v)", missing, want, ex)
		}
		time.Sleep(500 * time.Millisecond)
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if truncated > 0 {
		t.Errorf("%d messages arrived truncated", truncated)
	}
	t.Logf("20 kills: %d transactions tried, %d acknowledged with 250, all %d delivered; %d delivered twice (crash between delivery and its record), %d unacknowledged ones delivered too",
		sent, want, want, dups, len(seen)-want)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
