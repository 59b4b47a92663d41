// Command mkimage writes the boot image: vmlinuz, initramfs.cpio.gz and
// data.img. `make image` runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gatehouse/image"
	"gatehouse/init/pid1"
)

func main() {
	kernel := flag.String("kernel", "build/kernel", "directory made by image/fetch-kernel.sh")
	bin := flag.String("binary", "build/gatehouse", "the static gatehouse binary")
	cfg := flag.String("config", "config/default.yaml", "default config for the image")
	ca := flag.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA certificate bundle")
	out := flag.String("out", "build/image", "output directory")
	dataSize := flag.String("data-size", "256M", "size of a new data disk")
	flag.Parse()
	if err := run(*kernel, *bin, *cfg, *ca, *out, *dataSize); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(kernel, bin, cfg, ca, out, dataSize string) error {
	rel, err := os.ReadFile(filepath.Join(kernel, "release"))
	if err != nil {
		return fmt.Errorf("%w (run image/fetch-kernel.sh %s first)", err, kernel)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	vmlinuz, err := os.ReadFile(filepath.Join(kernel, "vmlinuz"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "vmlinuz"), vmlinuz, 0o644); err != nil {
		return err
	}
	spec := image.Spec{
		KernelRoot: filepath.Join(kernel, "root"), Release: strings.TrimSpace(string(rel)),
		Binary: bin, Config: cfg, CACerts: ca, Modules: image.Modules,
	}
	initrd := filepath.Join(out, "initramfs.cpio.gz")
	mods, err := image.Initramfs(spec, initrd)
	if err != nil {
		return err
	}
	st, _ := os.Stat(initrd)
	fmt.Printf("mkimage: %s: %d bytes, kernel %s, %d module files\n", initrd, st.Size(), spec.Release, len(mods))
	created, err := image.DataDisk(filepath.Join(out, "data.img"), pid1.DataLabel, dataSize)
	if err != nil {
		return err
	}
	if created {
		fmt.Printf("mkimage: %s: new ext4 data disk labelled %s\n", filepath.Join(out, "data.img"), pid1.DataLabel)
	}
	return nil
}
