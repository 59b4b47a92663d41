// Command runqemu boots the image in QEMU with the serial console on this
// terminal (`make run`). Ctrl-A X quits QEMU; `poweroff` at the prompt
// shuts the appliance down in order.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"gatehouse/image/qemu"
)

func main() {
	dir := flag.String("image", "build/image", "image directory")
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
