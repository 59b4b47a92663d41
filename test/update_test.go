//go:build e2e

package test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/image"
	"gatehouse/image/qemu"
	"gatehouse/init/pid1"
	"gatehouse/update"
)

// firmwareWorld is one appliance installed from its boot disk, with the
// bundles the test installs lying on its data partition.
type firmwareWorld struct {
	dir, disk, vars string
	kernel          string // build/image/vmlinuz, for the KVM probe
	sizes           map[string]int64
}

// buildBundles makes the firmware bundles the test installs: two good
// ones with newer versions, three broken ones, and three the appliance
// must refuse.
func buildBundles(t *testing.T, out string) map[string]int64 {
	t.Helper()
	img := imageDir(t)
	build := filepath.Dir(img)
	keyDir := filepath.Join(build, "bundle-key")
	key, err := update.ReadPrivateKey(filepath.Join(keyDir, update.PrivateKeyFile))
	if err != nil {
		t.Fatalf("the build's bundle key (make build/gatehouse makes it): %v", err)
	}
	pub, _ := os.ReadFile(filepath.Join(keyDir, update.PublicKeyFile))
	kernelDir := filepath.Join(build, "kernel")
	rel, err := os.ReadFile(filepath.Join(kernelDir, "release"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	now := time.Now().Unix()
	// The binaries: the product's, stamped with the versions the test
	// installs, and the deliberately broken /init in its two modes.
	goBuild := func(name, pkg string, x ...string) string {
		bin := filepath.Join(tmp, name)
		ld := "-s -w"
		for _, v := range x {
			ld += " -X " + v
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ld, "-o", bin, pkg)
		cmd.Dir, cmd.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v: %s", pkg, err, b)
		}
		return bin
	}
	product := func(version string, built int64) string {
		return goBuild(version, "./cmd/gatehouse", "main.version="+version, fmt.Sprint("main.built=", built),
			"gatehouse/update.trustedKey="+strings.TrimSpace(string(pub)))
	}
	noNetfilter := []string{}
	for _, m := range image.Modules {
		if !strings.HasPrefix(m, "nf") {
			noNetfilter = append(noNetfilter, m)
		}
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	sizes := map[string]int64{}
	bundle := func(name, version string, built int64, bin string, modules []string, k ed25519.PrivateKey) string {
		initrd := filepath.Join(tmp, name+".cpio.gz")
		spec := image.Spec{KernelRoot: filepath.Join(kernelDir, "root"), Release: strings.TrimSpace(string(rel)), Binary: bin,
			Config: "../config/default.yaml", CACerts: "/etc/ssl/certs/ca-certificates.crt", Modules: modules}
		if _, err := image.Initramfs(spec, initrd); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(out, name+".bundle")
		f, err := os.Create(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := update.Build(f, version, built, "", filepath.Join(img, "vmlinuz"), initrd, k); err != nil {
			t.Fatal(err)
		}
		f.Close()
		st, _ := os.Stat(file)
		sizes[name] = st.Size()
		return file
	}
	b := product("update-b", now)
	bundle("b", "update-b", now, b, image.Modules, key)
	c := product("update-c", now+1)
	bundle("c", "update-c", now+1, c, image.Modules, key)
	// Newer still, for the power cuts (the same binary as c).
	bundle("c2", "update-c2", now+10, c, image.Modules, key)
	bundle("c25", "update-c25", now+11, c, image.Modules, key)
	bundle("c3", "update-c3", now+12, c, image.Modules, key)
	bundle("panic", "broken-panic", now+2, goBuild("panic", "./test/brokeninit", "main.mode=panic"), image.Modules, key)
	bundle("hang", "broken-hang", now+3, goBuild("hang", "./test/brokeninit", "main.mode=hang"), image.Modules, key)
	// A firmware whose kernel modules do not match: no netfilter, so no
	// firewall, so never ready.
	bundle("notready", "broken-notready", now+4, b, noNetfilter, key)
	bundle("badsig", "update-badsig", now+5, b, image.Modules, otherKey)
	bundle("old", "update-old", 1, b, image.Modules, key)
	good, err := os.ReadFile(filepath.Join(out, "b.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "truncated.bundle"), good[:len(good)*2/3], 0o644)
	return sizes
}

// newFirmwareWorld builds a boot disk whose slot a is the image, and whose
// data partition holds the config and the bundles.
func newFirmwareWorld(t *testing.T) *firmwareWorld {
	t.Helper()
	img := imageDir(t)
	w := &firmwareWorld{dir: t.TempDir(), kernel: filepath.Join(img, "vmlinuz")}
	data := filepath.Join(w.dir, "data")
	os.MkdirAll(filepath.Join(data, "bundles"), 0o755)
	w.sizes = buildBundles(t, filepath.Join(data, "bundles"))
	os.WriteFile(filepath.Join(data, "gatehouse.yaml"), []byte("hostname: gw-update\nshutdown: {timeout: 5s}\nupdate: {trial_period: 10s, ready_timeout: 30s}\n"), 0o644)
	w.disk, w.vars = filepath.Join(w.dir, "disk.img"), filepath.Join(w.dir, "efivars.fd")
	err := image.DiskImage(w.disk, image.DiskSpec{Bootloader: "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
		Kernel: filepath.Join(img, "vmlinuz"), Initramfs: filepath.Join(img, "initramfs.cpio.gz"), Version: "image",
		DataLabel: pid1.DataLabel, DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	if err := qemu.NewEFIVars(w.vars); err != nil {
		t.Fatal(err)
	}
	return w
}

// start powers the machine on: the same disk and EFI variables each time.
func (w *firmwareWorld) start(t *testing.T) *qemu.VM {
	t.Helper()
	return startVM(t, qemu.Options{Disk: w.disk, EFIVars: w.vars, Kernel: w.kernel, Reboot: true})
}

// shell runs a command at the console and returns what came before the
// next prompt (the command's output, and any log lines in between).
func shell(t *testing.T, v *qemu.VM, line string) string {
	t.Helper()
	command(t, v, line)
	m, err := v.Expect(`(?s)^(.*?)gatehouse> `, time.Minute)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return m[1]
}

// firmwareStatus is the console's status once the boot knows its slots
// (the modules for the ESP and the EFI variables may load after ready).
func firmwareStatus(t *testing.T, v *qemu.VM) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out := shell(t, v, "status")
		if strings.Contains(out, "firmware: ") && !strings.Contains(out, "default slot not known yet") {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("the firmware's slots are not known a minute after ready:\n%s", out)
		}
		time.Sleep(time.Second)
	}
}

// A/B updates on a machine installed from its boot disk (OVMF, systemd-
// boot, real reboots): two good updates, each becoming the default after
// its trial; three broken firmwares (PID 1 panics, never ready, hangs),
// each falling back to the old slot by itself with the reason in status;
// three bundles refused with nothing written; power cut during the write,
// right after it and during the trial boot, each time booting a working
// slot.
func TestFirmwareUpdate(t *testing.T) {
	top := t // machines started in a subtest outlive it
	w := newFirmwareWorld(t)
	t.Logf("bundle sizes: %v", w.sizes)
	v := w.start(t)
	waitReady(t, v)
	if out := firmwareStatus(t, v); !strings.Contains(out, "firmware: slot a (") || strings.Contains(out, "update to") {
		t.Fatalf("fresh install:\n%s", out)
	}

	t.Run("refused", func(t *testing.T) {
		for bundle, why := range map[string]string{
			"badsig":    "signature does not verify with the built-in key",
			"truncated": "truncated",
			"old":       "a downgrade",
		} {
			out := shell(t, v, "update /data/bundles/"+bundle+".bundle")
			if !strings.Contains(out, "update refused; nothing changed") || !strings.Contains(out, why) {
				t.Errorf("%s: %s", bundle, out)
			}
		}
		if out := firmwareStatus(t, v); strings.Contains(out, "update to") || !strings.Contains(out, "default slot a") {
			t.Errorf("after refusals, status:\n%s", out)
		}
	})

	// installs bundle and reboots into its trial; it returns when the
	// console said the update passed or failed.
	install := func(t *testing.T, bundle string) time.Duration {
		t.Helper()
		start := time.Now()
		command(t, v, "update /data/bundles/"+bundle+".bundle --reboot")
		expect(t, v, `firmware written to the other slot`)
		written := time.Since(start)
		expect(t, v, `gatehouse: reboot`)
		return written
	}
	t.Run("update to b, then back to a", func(t *testing.T) {
		start := time.Now()
		written := install(t, "b")
		waitReady(t, v)
		toReady := time.Since(start)
		if out := firmwareStatus(t, v); !strings.Contains(out, "firmware: slot b (update-b), default slot a, ON TRIAL") {
			t.Errorf("on trial:\n%s", out)
		}
		m, err := v.Expect(`gatehouse: updated to update-b: slot b is the default`, time.Minute)
		if err != nil {
			t.Fatal(m, err)
		}
		t.Logf("gatehouse update to the new version ready: %v (QEMU TCG, OVMF), of which verifying, checking the config and writing the slot %v; bundle %d bytes",
			toReady.Round(time.Millisecond), written.Round(time.Millisecond), w.sizes["b"])
		if out := firmwareStatus(t, v); !strings.Contains(out, "firmware: slot b (update-b), default slot b") || !strings.Contains(out, "updated to update-b (slot b)") {
			t.Errorf("after the trial:\n%s", out)
		}
		install(t, "c")
		if _, err := v.Expect(`gatehouse: updated to update-c: slot a is the default`, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		// A reboot keeps the new default.
		command(t, v, "reboot")
		expect(t, v, `gatehouse: reboot`)
		waitReady(t, v)
		if out := firmwareStatus(t, v); !strings.Contains(out, "firmware: slot a (update-c), default slot a") {
			t.Errorf("after a reboot:\n%s", out)
		}
	})

	for _, c := range []struct{ bundle, version, evidence, reason string }{
		{"panic", "broken-panic", `Kernel panic - not syncing: Attempted to kill init`, "never reached its data disk"},
		{"hang", "broken-hang", `brokeninit: watchdog armed for 10 s; hanging`, "never reached its data disk"},
		{"notready", "broken-notready", `trial of broken-notready failed: not ready within 30s`, "not ready within 30s: waiting for firewall"},
	} {
		t.Run("fallback from "+c.bundle, func(t *testing.T) {
			install(t, c.bundle)
			if _, err := v.Expect(c.evidence, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			// Nobody touches anything: the old firmware comes back.
			if _, err := v.Expect(`gatehouse: update to `+c.version+` failed: .*running slot a \(update-c\)`, 3*time.Minute); err != nil {
				t.Fatal(err)
			}
			out := firmwareStatus(t, v)
			if !strings.Contains(out, "firmware: slot a (update-c), default slot a") || !strings.Contains(out, "update to "+c.version+" failed: ") || !strings.Contains(out, c.reason) {
				t.Errorf("status after the fallback:\n%s", out)
			}
		})
	}

	// afterCut checks the machine came back on a working slot: the one it
	// ran (the update failed or never armed), or the new one on trial,
	// which then passes.
	afterCut := func(t *testing.T, cur, other string) {
		t.Helper()
		waitReady(t, v)
		out := firmwareStatus(t, v)
		t.Logf("after the cut:\n%s", out)
		switch {
		case strings.Contains(out, "firmware: slot "+cur+" "):
		case strings.Contains(out, "firmware: slot "+other+" ") && strings.Contains(out, "ON TRIAL"):
			if _, err := v.Expect(`gatehouse: updated to .*: slot `+other+` is the default`, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("after the power cut, neither slot %s nor a trial of %s:\n%s", cur, other, out)
		}
	}
	running := func(t *testing.T) (cur, other string) {
		if out := firmwareStatus(t, v); strings.Contains(out, "firmware: slot b") {
			return "b", "a"
		}
		return "a", "b"
	}
	t.Run("power cut while writing", func(t *testing.T) {
		cur, other := running(t)
		command(t, v, "update /data/bundles/c2.bundle")
		expect(t, v, `writing the firmware to the other slot`)
		time.Sleep(time.Duration(mrand.N(1500)) * time.Millisecond) // a random point of the write: the cut is the test
		v.Kill()
		v = w.start(top)
		afterCut(t, cur, other)
	})

	// The cut at once after the write: what the kernel would write back
	// later must not be needed to boot. On FAT a renamed file's size and
	// first cluster reach the disk only with its own inode; this cut left
	// an entry naming an empty initrd, and the machine at the firmware's
	// shell, until the ESP was synced as a whole.
	t.Run("power cut right after the write", func(t *testing.T) {
		cur, other := running(t)
		command(t, v, "update /data/bundles/c25.bundle")
		expect(t, v, `firmware written to the other slot`)
		v.Kill()
		v = w.start(top)
		afterCut(t, cur, other)
	})

	t.Run("power cut during the trial boot", func(t *testing.T) {
		cur, _ := running(t)
		install(t, "c3")
		if _, err := v.Expect(`trial boot of a new firmware`, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		// Somewhere in the trial: it passes 10 s (trial_period) after ready,
		// which comes about a second after this line.
		time.Sleep(time.Duration(mrand.N(2000)) * time.Millisecond)
		v.Kill()
		v = w.start(top)
		waitReady(t, v)
		// The boot loader's one-shot entry was spent on the trial: the old
		// firmware is back, and says why.
		out := firmwareStatus(t, v)
		if !strings.Contains(out, "firmware: slot "+cur+" ") || !strings.Contains(out, "update to update-c3 failed: ") {
			t.Errorf("after a cut during the trial (slot %s before it):\n%s", cur, out)
		}
	})
}
