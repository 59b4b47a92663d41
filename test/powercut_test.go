//go:build e2e

package test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/image/qemu"
)

// A power cut: the booted appliance accepts mail while its next hop is
// down, then QEMU is killed (guest RAM and page cache gone; only what the
// guest wrote to its disk survives). After the next boot every message that
// got a 250 is delivered.
func TestSMTPPowerCut(t *testing.T) {
	base := 20000 + os.Getpid()%20000
	smtpPort, sinkPort := base, base+1
	img := dataDisk(t, map[string]string{"gatehouse.yaml": fmt.Sprintf(`
hostname: gw-mail
interfaces:
  - {name: eth0, dhcp: true}
smtp:
  hostname: mx.example.test
  domains:
    - {name: example.test, next_hop: "[10.0.2.2]:%d", tls: none}
  trusted_networks: [10.0.2.2]   # QEMU's forwarded connections come from here
  queue: {min_backoff: 1s, max_backoff: 2s}
`, sinkPort)})
	nic := fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:25", smtpPort)
	v := boot(t, qemu.Options{Data: img, Nics: []string{nic}})
	waitReady(t, v)

	// Four clients; the next hop is down, so everything stays queued.
	var mu sync.Mutex
	var acked []int
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := c*1000 + i
				if sendOne(fmt.Sprintf("127.0.0.1:%d", smtpPort), n) {
					mu.Lock()
					acked = append(acked, n)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(acked) < 150 {
		t.Fatalf("only %d of 200 messages were accepted before the power cut", len(acked))
	}
	v.Kill() // right after the last 250: nothing had time to reach the disk by itself

	sinkDir := t.TempDir()
	sink := exec.Command("smtp-sink", "-u", "root", "-d", sinkDir+"/m.", fmt.Sprintf("127.0.0.1:%d", sinkPort), "64")
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sink.Process.Kill(); sink.Wait() }()

	v = boot(t, qemu.Options{Data: img, Nics: []string{nic}})
	waitReady(t, v)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		seen := map[string]bool{}
		for _, d := range dumps(sinkDir) {
			if i := strings.Index(d, "Message-ID: <dur-"); i >= 0 {
				seen[d[i:i+strings.IndexByte(d[i:], '>')+1]] = true
			}
		}
		missing := 0
		for _, n := range acked {
			if !seen[fmt.Sprintf("Message-ID: <dur-%d@test>", n)] {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("%d messages acknowledged before the power cut, all delivered after it", len(acked))
			break
		}
		if time.Now().After(deadline) {
			command(t, v, "queue")
			time.Sleep(2 * time.Second)
			t.Fatalf("%d of %d acknowledged messages lost or not delivered after the power cut", missing, len(acked))
		}
		time.Sleep(time.Second)
	}
	command(t, v, "poweroff")
	expect(t, v, `gatehouse: /data unmounted cleanly`)
	if err := v.Wait(stepTimeout); err != nil {
		t.Fatal(err)
	}
}
