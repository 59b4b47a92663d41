// Command mkdisk writes the UEFI boot disk: a GPT with the EFI system
// partition (systemd-boot, slot a holding the image's kernel and
// initramfs) and the ext4 data partition. `make disk-image` runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"gatehouse/image"
	"gatehouse/init/pid1"
)

func main() {
	dir := flag.String("image", "build/image", "directory holding vmlinuz and initramfs.cpio.gz (make image)")
	out := flag.String("out", "build/image/disk.img", "the disk image to write (replaced)")
	boot := flag.String("bootloader", "/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "systemd-boot's EFI binary (Debian's systemd-boot-efi)")
	version := flag.String("version", "dev", "slot a's firmware version")
	cmdline := flag.String("cmdline", image.DefaultCmdline, "slot a's kernel command line (gatehouse.slot=a is added)")
	sizeMiB := flag.Int64("size", 1024, "disk size in MiB")
	espMiB := flag.Int64("esp-size", 160, "EFI system partition size in MiB")
	flag.Parse()
	spec := image.DiskSpec{
		Size: *sizeMiB << 20, ESPSize: *espMiB << 20,
		Bootloader: *boot,
		Kernel:     filepath.Join(*dir, "vmlinuz"),
		Initramfs:  filepath.Join(*dir, "initramfs.cpio.gz"),
		Version:    *version, Cmdline: *cmdline,
		DataLabel: pid1.DataLabel,
	}
	if err := image.DiskImage(*out, spec); err != nil {
		fmt.Fprintln(os.Stderr, "mkdisk:", err)
		os.Exit(1)
	}
	l, _ := image.DiskLayout(spec.Size, spec.ESPSize)
	fmt.Printf("mkdisk: %s: %d MiB GPT disk: ESP %s %d MiB (slot a %s), data %s %d MiB\n",
		*out, *sizeMiB, image.ESPLabel, l.ESPSize>>20, *version, pid1.DataLabel, l.DataSize>>20)
}
