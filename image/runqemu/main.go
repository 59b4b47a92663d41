// Command runqemu boots the image in QEMU with the serial console on this
// terminal (`make run`), or with -disk the UEFI boot disk under OVMF
// (`make run-disk`). Ctrl-A X quits QEMU; `poweroff` at the prompt shuts
// the appliance down in order.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"gatehouse/image/qemu"
)

func main() {
	dir := flag.String("image", "build/image", "image directory")
	disk := flag.String("disk", "", "boot this disk (make disk-image) under UEFI instead of the image's kernel and data.img")
	vars := flag.String("efivars", "", "with -disk, the VM's EFI variable store (default: the disk's name with -vars.fd; made from OVMF's template when absent)")
	smtp := flag.String("smtp", "127.0.0.1:2525", "host address forwarded to the guest's port 25")
	mem := flag.Int("m", 1024, "memory in MiB")
	flag.Parse()
	o := qemu.Options{
		Kernel:    filepath.Join(*dir, "vmlinuz"),
		Initramfs: filepath.Join(*dir, "initramfs.cpio.gz"),
		Data:      filepath.Join(*dir, "data.img"),
		MemoryMiB: *mem,
		Nics:      []string{"user,hostfwd=tcp:" + *smtp + "-:25"},
	}
	if *disk != "" {
		// The kernel stays named: the KVM probe boots it.
		o.Disk, o.Initramfs, o.Data = *disk, "", ""
		o.EFIVars = *vars
		if o.EFIVars == "" {
			o.EFIVars = strings.TrimSuffix(*disk, ".img") + "-vars.fd"
		}
		if err := efiVars(o.EFIVars, *disk); err != nil {
			fmt.Fprintln(os.Stderr, "runqemu:", err)
			os.Exit(1)
		}
	}
	path, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		fmt.Fprintln(os.Stderr, "runqemu: qemu-system-x86_64 not found (make deps installs it)")
		os.Exit(1)
	}
	if o.Accel, err = qemu.ChooseAccel(o.Kernel, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "runqemu:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "runqemu: console below; Ctrl-A X quits QEMU, poweroff at the prompt shuts down; guest port 25 is %s\n", *smtp)
	err = syscall.Exec(path, append([]string{path}, o.Args(true)...), os.Environ())
	fmt.Fprintln(os.Stderr, "runqemu:", err)
	os.Exit(1)
}

// efiVars keeps the VM's variable store from run to run, so what the
// appliance set (a trial boot, a new default slot) holds, as in a
// machine's NVRAM. make disk-image removes it with the old disk.
func efiVars(file, disk string) error {
	if _, err := os.Stat(disk); err != nil {
		return fmt.Errorf("%w (make disk-image writes it)", err)
	}
	if _, err := os.Stat(file); err == nil {
		return nil
	}
	return qemu.NewEFIVars(file)
}
