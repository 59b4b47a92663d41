package qemu

import (
	"slices"
	"strings"
	"testing"
)

// A boot disk goes to OVMF, not to QEMU's kernel loader; reboots stay in
// QEMU only when asked for; the direct boot keeps its command line.
func TestArgs(t *testing.T) {
	for _, c := range []struct {
		name         string
		o            Options
		want, absent []string
	}{
		{"direct", Options{Kernel: "k", Initramfs: "i", Data: "d"},
			[]string{"-kernel k", "-initrd i", "-no-reboot", "nvme,drive=data,serial=gatehouse-data"},
			[]string{"pflash"}},
		{"disk", Options{Kernel: "k", Disk: "disk.img", EFIVars: "vars.fd", Reboot: true},
			[]string{"if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode, "if=pflash,format=raw,unit=1,file=vars.fd",
				"file=disk.img,format=raw,if=none,id=disk", "nvme,drive=disk,serial=gatehouse-disk,bootindex=0"},
			[]string{"-kernel", "-initrd", "-append", "-no-reboot"}},
		{"disk on virtio", Options{Disk: "disk.img", EFIVars: "vars.fd", DataBus: "virtio"},
			[]string{"virtio-blk-pci,drive=disk,bootindex=0", "-no-reboot"},
			[]string{"-kernel", "nvme"}},
	} {
		args := strings.Join(c.o.Args(false), " ")
		for _, w := range c.want {
			if !strings.Contains(args, w) {
				t.Errorf("%s: %q lacks %q", c.name, args, w)
			}
		}
		for _, n := range c.absent {
			if strings.Contains(args, n) {
				t.Errorf("%s: %q has %q", c.name, args, n)
			}
		}
	}
	if !slices.Contains(Options{Reboot: false}.Args(true), "-nographic") {
		t.Error("interactive console lost")
	}
}

func TestStartNeedsEFIVars(t *testing.T) {
	if _, err := Start(Options{Disk: "disk.img", Accel: TCG}); err == nil || !strings.Contains(err.Error(), "EFIVars") {
		t.Errorf("got %v", err)
	}
}
