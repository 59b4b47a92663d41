package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// standIn writes a script that plays QEMU: it records each start in a file
// next to it and then runs body.
func standIn(t *testing.T, body string) (qemu, starts string) {
	t.Helper()
	dir := t.TempDir()
	qemu, starts = filepath.Join(dir, "qemu"), filepath.Join(dir, "starts")
	script := "#!/bin/sh\necho \"$*\" >> " + starts + "\n" + body + "\n"
	if err := os.WriteFile(qemu, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return qemu, starts
}

func startCount(t *testing.T, starts string) int {
	data, err := os.ReadFile(starts)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// kvmDev is a stand-in /dev/kvm that can be opened read-write.
func kvmDev(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChooseAccel(t *testing.T) {
	const (
		// What QEMU printed on a nested VM whose KVM cannot run the guest.
		abort = `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed." >&2
kill -ABRT $$`
		// With -cpu host,-arch-capabilities it started, printed nothing and hung.
		silent = `sleep 60`
		boots  = `echo "[    0.9] Kernel panic - not syncing: VFS: Unable to mount root fs"; exit 0`
		// Exits cleanly without the kernel having run (a broken firmware, say).
		empty = `exit 0`
	)
	for _, tc := range []struct {
		name       string
		body       string
		env        string
		noKVM      bool
		want       string
		reason     string
		wantStarts int
	}{
		{name: "KVM works", body: boots, want: KVM, wantStarts: 1},
		{name: "KVM aborts", body: abort, want: TCG, reason: "failed to set MSR 0x10a to 0x69", wantStarts: 1},
		{name: "KVM hangs silently", body: silent, want: TCG, reason: "did not boot within", wantStarts: 1},
		{name: "KVM exits without booting", body: empty, want: TCG, reason: "without booting", wantStarts: 1},
		{name: "no /dev/kvm", body: boots, noKVM: true, want: TCG, reason: "no usable", wantStarts: 0},
		{name: "forced TCG", body: boots, env: "tcg", want: TCG, wantStarts: 0},
		{name: "forced KVM", body: abort, env: "kvm", want: KVM, wantStarts: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu, starts := standIn(t, tc.body)
			dev := kvmDev(t)
			if tc.noKVM {
				dev = filepath.Join(t.TempDir(), "absent")
			}
			p := Prober{QEMU: qemu, KVMDev: dev, Timeout: 2 * time.Second, Env: tc.env}
			begin := time.Now()
			c, err := p.Choose("vmlinuz")
			if err != nil {
				t.Fatal(err)
			}
			if c.Accel != tc.want {
				t.Errorf("accel %q, want %q (reason %q)", c.Accel, tc.want, c.Reason)
			}
			if !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("reason %q, want it to say %q", c.Reason, tc.reason)
			}
			if n := startCount(t, starts); n != tc.wantStarts {
				t.Errorf("QEMU started %d times, want %d", n, tc.wantStarts)
			}
			// The hung stand-in is killed with its children, not waited for.
			if d := time.Since(begin); d > 20*time.Second {
				t.Errorf("probe took %v: a hung QEMU was not killed", d)
			}
		})
	}
}

func TestChooseAccelRejectsUnknownOverride(t *testing.T) {
	_, err := Prober{Env: "hvf"}.Choose("vmlinuz")
	if err == nil || !strings.Contains(err.Error(), "GATEHOUSE_ACCEL") {
		t.Fatalf("err = %v, want one naming GATEHOUSE_ACCEL", err)
	}
}

func TestChooseAccelCache(t *testing.T) {
	qemu, starts := standIn(t, `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; exit 1`)
	cache := filepath.Join(t.TempDir(), "sub", "accel.json")
	p := Prober{QEMU: qemu, KVMDev: kvmDev(t), Cache: cache, Timeout: 2 * time.Second}
	for i := 0; i < 3; i++ {
		c, err := p.Choose("vmlinuz")
		if err != nil {
			t.Fatal(err)
		}
		if c.Accel != TCG || !strings.Contains(c.Reason, "MSR 0x10a") {
			t.Fatalf("run %d: %+v", i, c)
		}
	}
	if n := startCount(t, starts); n != 1 {
		t.Errorf("QEMU probed %d times with a cache, want 1", n)
	}
	// An answer for another machine (another key) is not used.
	if err := os.WriteFile(cache, []byte(`{"key":"another machine","accel":"kvm"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _ := p.Choose("vmlinuz"); c.Accel != TCG {
		t.Errorf("a cache entry for another machine was used: %+v", c)
	}
	if n := startCount(t, starts); n != 2 {
		t.Errorf("QEMU probed %d times, want 2 after the key changed", n)
	}
}

// A probe that timed out (a busy machine, perhaps) is not remembered:
// the next run asks again.
func TestChooseAccelTimeoutNotCached(t *testing.T) {
	qemu, starts := standIn(t, `sleep 60`)
	p := Prober{QEMU: qemu, KVMDev: kvmDev(t), Cache: filepath.Join(t.TempDir(), "accel.json"), Timeout: time.Second}
	for range 2 {
		if c, _ := p.Choose("vmlinuz"); c.Accel != TCG {
			t.Fatalf("%+v", c)
		}
	}
	if n := startCount(t, starts); n != 2 {
		t.Errorf("QEMU probed %d times, want 2: a timeout is not cached", n)
	}
}

func TestArgsAccel(t *testing.T) {
	o := Options{Kernel: "k", Initramfs: "i"}
	for accel, want := range map[string]string{KVM: "-accel kvm -cpu host", TCG: "-accel tcg"} {
		o.Accel = accel
		if got := strings.Join(o.Args(false), " "); !strings.Contains(got, want) {
			t.Errorf("Accel %s: args %q lack %q", accel, got, want)
		}
	}
}
