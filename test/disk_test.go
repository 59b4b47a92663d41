//go:build e2e

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/image"
	"gatehouse/image/qemu"
)

// bootDisk copies the image's UEFI boot disk (make disk-image) into the
// test's directory with a fresh EFI variable store, as a new machine, and
// boots it under OVMF.
func bootDisk(t *testing.T, o qemu.Options) (*qemu.VM, string) {
	t.Helper()
	dir := imageDir(t)
	src := filepath.Join(dir, "disk.img")
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("no boot disk (run make disk-image): %v", err)
	}
	tmp := t.TempDir()
	disk := filepath.Join(tmp, "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", src, disk).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	o.Disk, o.EFIVars = disk, filepath.Join(tmp, "efivars.fd")
	if err := qemu.NewEFIVars(o.EFIVars); err != nil {
		t.Fatal(err)
	}
	o.Kernel = filepath.Join(dir, "vmlinuz") // for the KVM probe only
	return startVM(t, o), disk
}

// The boot disk boots as a machine would: OVMF starts systemd-boot from the
// ESP, systemd-boot slot a's entry, and PID 1 finds the data partition by
// its label. A reboot restarts the machine in the same QEMU and boots the
// same slot; poweroff leaves the data partition clean.
func TestDiskImageBoots(t *testing.T) {
	v, disk := bootDisk(t, qemu.Options{Reboot: true})
	if _, err := v.Expect(`BdsDxe: starting Boot\d+ "UEFI QEMU NVMe Ctrl gatehouse-disk`, bootTimeout); err != nil {
		t.Fatal(err)
	}
	loader := time.Since(v.Started)
	ms := waitReady(t, v)
	t.Logf("OVMF+TCG: QEMU start to boot loader: %v; PID 1 start to ready: %d ms; QEMU start to ready: %v",
		loader.Round(time.Millisecond), ms, time.Since(v.Started).Round(time.Millisecond))

	// vfat, efivarfs and softdog among them: updates need them.
	if err := v.Seen(`init: loaded kernel modules loaded=\d+ failed=0`, stepTimeout); err != nil {
		t.Fatal(err)
	}
	command(t, v, "status")
	expect(t, v, `data:     /dev/nvme0n1p2 on /data, read-write`)
	expect(t, v, `gatehouse> `)
	command(t, v, "logs kernel 1000")
	m := expect(t, v, `Command line: (.*console=ttyS0 panic=5 quiet gatehouse\.slot=a)`)
	t.Logf("kernel command line from slot a's entry: %q", m[1])
	expect(t, v, `gatehouse> `)

	command(t, v, "reboot")
	expect(t, v, `gatehouse: /data unmounted cleanly`)
	expect(t, v, `gatehouse: reboot`)
	rebooted := time.Now()
	ms = waitReady(t, v)
	t.Logf("reboot to ready: %v (PID 1 start to ready: %d ms)", time.Since(rebooted).Round(time.Millisecond), ms)
	command(t, v, "logs kernel 1000")
	expect(t, v, `Command line: .*gatehouse\.slot=a`)
	expect(t, v, `gatehouse> `)

	command(t, v, "poweroff")
	expect(t, v, `gatehouse: /data unmounted cleanly`)
	expect(t, v, `reboot: Power down`)
	if err := v.Wait(stepTimeout); err != nil {
		t.Fatalf("QEMU did not exit by itself after poweroff: %v", err)
	}
	cleanlyUnmounted(t, dataPartition(t, disk))
}

// dataPartition copies the boot disk's data partition out into a file of
// its own, for dumpe2fs and e2fsck.
func dataPartition(t *testing.T, disk string) string {
	t.Helper()
	st, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	l, err := image.DiskLayout(st.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "data.img")
	const mib = 1 << 20
	if b, err := exec.Command("dd", "if="+disk, "of="+out, "bs=1M", "conv=sparse", "status=none",
		fmt.Sprint("skip=", l.DataStart/mib), fmt.Sprint("count=", l.DataSize/mib)).CombinedOutput(); err != nil {
		t.Fatalf("dd: %v: %s", err, b)
	}
	return out
}
