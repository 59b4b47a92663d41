//go:build e2e

// End-to-end tests: boot the real image in QEMU and use it from its serial
// console, as an operator would. `make test` builds the image and runs them;
// without the e2e build tag this package has no tests.
package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/image/qemu"
)

// Under TCG on a loaded 2-core machine a boot takes a few seconds; these
// bounds only keep a hung VM from hanging the test run.
const (
	bootTimeout = 90 * time.Second
	stepTimeout = 30 * time.Second
)

func imageDir(t *testing.T) string {
	dir := os.Getenv("GATEHOUSE_IMAGE")
	if dir == "" {
		dir = "../build/image"
	}
	for _, f := range []string{"vmlinuz", "initramfs.cpio.gz"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("no image (run make image): %v", err)
		}
	}
	return dir
}

// dataDisk makes a fresh data disk holding files (name -> content).
func dataDisk(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "data.img")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "GATEHOUSE-DATA", "-d", root, img, "64M").CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

func boot(t *testing.T, o qemu.Options) *qemu.VM {
	t.Helper()
	dir := imageDir(t)
	o.Kernel, o.Initramfs = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.cpio.gz")
	return startVM(t, o)
}

// startVM starts a VM that the test's end kills, showing its console if
// the test failed.
func startVM(t *testing.T, o qemu.Options) *qemu.VM {
	t.Helper()
	v, err := qemu.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Kill()
		if t.Failed() {
			t.Logf("console:\n%s", v.Output())
		}
	})
	return v
}

func expect(t *testing.T, v *qemu.VM, re string) []string {
	t.Helper()
	m, err := v.Expect(re, stepTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// command types a line at the prompt and waits for the next prompt.
func command(t *testing.T, v *qemu.VM, line string) {
	t.Helper()
	if err := v.Send(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

func waitReady(t *testing.T, v *qemu.VM) int {
	t.Helper()
	m, err := v.Expect(`gatehouse: ready in (\d+) ms`, bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := strconv.Atoi(m[1])
	return ms
}

// cleanlyUnmounted checks the ext4 journal has nothing to recover and the
// file system checks clean.
func cleanlyUnmounted(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v: %s", err, out)
	}
	if strings.Contains(string(out), "needs_recovery") {
		t.Errorf("data disk was not cleanly unmounted: journal needs recovery")
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v: %s", err, out)
	}
}

func TestBootStatusPoweroff(t *testing.T) {
	img := dataDisk(t, map[string]string{"gatehouse.yaml": "hostname: gw-e2e\nshutdown: {timeout: 5s}\n"})
	v := boot(t, qemu.Options{Data: img})
	ms := waitReady(t, v)
	t.Logf("PID 1 start to ready: %d ms; QEMU start to ready: %v", ms, time.Since(v.Started).Round(time.Millisecond))

	command(t, v, "") // Enter brings up the prompt
	expect(t, v, `gatehouse> `)
	command(t, v, "status")
	expect(t, v, `gatehouse \S+ on gw-e2e \(pid1\), up \d+s, ready in \d+ ms`)
	expect(t, v, `config:   /data/gatehouse.yaml`)
	expect(t, v, `data:     /dev/nvme0n1 on /data, read-write`)
	expect(t, v, `gatehouse> `)
	command(t, v, "logs kernel 1000")
	expect(t, v, `Run /init as init process`)
	expect(t, v, `gatehouse> `)
	command(t, v, "ip")
	expect(t, v, `lo\s+UNKNOWN\s+mtu 65536\s+127\.0\.0\.1/8 ::1/128`)
	expect(t, v, `gatehouse> `)
	command(t, v, "firewall")
	expect(t, v, `firewall: nftables, applied \d+s ago \(1 times\), egress open`)
	expect(t, v, `inbound \(default drop; replies, loopback and essential ICMP pass\):`)
	command(t, v, "frobnicate")
	expect(t, v, `unknown command "frobnicate"; try help`)
	command(t, v, "poweroff")
	expect(t, v, `init: shutting down action=poweroff`)
	expect(t, v, `gatehouse: /data unmounted cleanly`)
	expect(t, v, `reboot: Power down`)
	if err := v.Wait(stepTimeout); err != nil {
		t.Fatalf("QEMU did not exit by itself after poweroff: %v", err)
	}
	if n := v.Count(`gatehouse: ready in \d+ ms`); n != 1 {
		t.Errorf("%d ready lines, want exactly 1", n)
	}
	cleanlyUnmounted(t, img)
}

// A data disk on virtio-blk is found once its modules are loaded; an
// invalid config on it is reported with its position and the image's
// default is used instead; reboot ends in an orderly shutdown too.
func TestBootVirtioDiskInvalidConfigReboot(t *testing.T) {
	img := dataDisk(t, map[string]string{"gatehouse.yaml": "hostname: gw-e2e\nbogus: 1\n"})
	v := boot(t, qemu.Options{Data: img, DataBus: "virtio"})
	expect(t, v, `init: data disk mounted on /data device=/dev/vda`)
	expect(t, v, `config is invalid; ignoring it file=/data/gatehouse.yaml`)
	expect(t, v, `/data/gatehouse.yaml:2:1: bogus: unknown key "bogus"`)
	waitReady(t, v)
	command(t, v, "status")
	expect(t, v, `gatehouse \S+ on gatehouse \(pid1\)`)
	expect(t, v, `config:   /etc/gatehouse/gatehouse.yaml`)
	expect(t, v, `warning: /data/gatehouse.yaml is invalid and was ignored`)
	command(t, v, "reboot")
	expect(t, v, `init: shutting down action=reboot`)
	expect(t, v, `gatehouse: /data unmounted cleanly`)
	expect(t, v, `gatehouse: reboot`)
	if err := v.Wait(stepTimeout); err != nil { // -no-reboot: QEMU exits instead
		t.Fatalf("QEMU did not exit after reboot: %v", err)
	}
	cleanlyUnmounted(t, img)
}

// Without a data disk the appliance still boots to a working console, says
// loudly that nothing persists, and Ctrl-Alt-Del reboots it in order.
func TestBootWithoutDataDiskCtrlAltDel(t *testing.T) {
	mon := filepath.Join(t.TempDir(), "monitor.sock")
	v := boot(t, qemu.Options{Monitor: mon})
	expect(t, v, `WARNING: /data is READ-ONLY: no ext4 file system labelled GATEHOUSE-DATA`)
	waitReady(t, v)
	command(t, v, "status")
	expect(t, v, `data:     NOT MOUNTED`)
	expect(t, v, `gatehouse> `)
	if err := v.Monitor("sendkey ctrl-alt-delete"); err != nil {
		t.Fatal(err)
	}
	expect(t, v, `init: shutting down action=reboot`)
	expect(t, v, `gatehouse: reboot`)
	if err := v.Wait(stepTimeout); err != nil {
		t.Fatalf("QEMU did not exit after Ctrl-Alt-Del: %v", err)
	}
}

// Network and time on the real appliance: DHCP from QEMU's user network, a
// VLAN (the host kernel of the CI machine has no 802.1Q, the image's does),
// and NTP against chrony on the host's loopback, reached through QEMU's
// 10.0.2.2. The guest's clock starts in 2020: the time service must step
// it, and write the RTC.
func TestBootNetworkVLANAndClockStep(t *testing.T) {
	dir := t.TempDir()
	port := 20000 + os.Getpid()%20000
	conf := filepath.Join(dir, "chrony.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("local stratum 8\nport %d\nbindaddress 127.0.0.1\nallow 127.0.0.1\ncmdport 0\npidfile %s/chronyd.pid\ndriftfile %s/drift\n", port, dir, dir)), 0o644)
	chrony := exec.Command("chronyd", "-x", "-d", "-f", conf) // -x: never touch the host's clock
	if err := chrony.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { chrony.Process.Kill(); chrony.Wait() }()

	img := dataDisk(t, map[string]string{"gatehouse.yaml": fmt.Sprintf(`
hostname: gw-net
interfaces:
  - name: eth0
    dhcp: true
    vlans: [{id: 100, addresses: [10.100.0.2/24]}]
ntp:
  servers: ["10.0.2.2:%d"]
`, port)})
	v := boot(t, qemu.Options{Data: img, Nics: []string{"user"}, Extra: []string{"-rtc", "base=2020-01-01T00:00:00"}})
	waitReady(t, v)
	// These may come before or after the ready line.
	for _, re := range []string{`ntp: level=WARN msg="stepping the clock" offset=\d+h`, `ntp: level=INFO msg="RTC written"`,
		`condition holds service=ntp condition=clock-synced`, `network: level=INFO msg="wall clock stepped; lease times shown anew"`} {
		if err := v.Seen(re, stepTimeout); err != nil {
			t.Fatal(err)
		}
	}

	command(t, v, "ntp")
	expect(t, v, fmt.Sprintf(`ntp: synced to 10\.0\.2\.2:%d, stratum 8, .*; sets the clock; .* 1 steps`, port))
	command(t, v, "date")
	year := fmt.Sprint(time.Now().UTC().Year())
	expect(t, v, `system: `+year+`-`)
	expect(t, v, `rtc:    `+year+`-`)
	command(t, v, "ip")
	expect(t, v, `eth0\s+\S+\s+mtu 1500\s+52:54:00:12:34:56 10\.0\.2\.15/24`)
	expect(t, v, `eth0\.100\s+\S+\s+mtu 1500\s+52:54:00:12:34:56 10\.100\.0\.2/24`)
	expect(t, v, `default via 10\.0\.2\.2 dev eth0`)
	command(t, v, "status")
	expect(t, v, `conditions: clock-synced firewall-default-deny modules-loaded netfilter-loaded`)
	// The lease was taken on the old clock; the status shows it on the
	// stepped one once the network service has heard of the step: ask
	// again until it has.
	for i := 0; ; i++ {
		m := expect(t, v, `dhcp bound 10\.0\.2\.15/24 from 10\.0\.2\.2, router 10\.0\.2\.2, renew in (\S+)`)
		if regexp.MustCompile(`^\d+h`).MatchString(m[1]) {
			break
		}
		if i == 20 {
			t.Fatalf("the lease's renewal still shows %q after the clock step", m[1])
		}
		command(t, v, "status")
	}
	command(t, v, "poweroff")
	expect(t, v, `gatehouse: /data unmounted cleanly`)
	if err := v.Wait(stepTimeout); err != nil {
		t.Fatal(err)
	}
}
