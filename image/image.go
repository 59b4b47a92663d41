// Package image builds the appliance's boot image: an initramfs holding the
// gatehouse binary as /init with exactly the kernel modules it needs, and an
// ext4 data disk. Nothing from the build host goes in beyond what Spec lists.
package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	"gatehouse/safeio"
)

// Modules are the kernel modules the image carries and PID 1 loads at boot,
// with their dependencies: virtio devices, VLANs, netfilter for the
// firewall, and what updates on a UEFI boot disk need.
//
// They load in this order: the firewall waits for them before the
// appliance is ready, so netfilter comes right after the disk.
var Modules = []string{
	"virtio_pci", "virtio_blk",
	"nf_tables", "nft_ct", "nft_limit", "nft_log", "nft_reject_inet",
	"nf_log_syslog", // the logger behind nft's log: no modprobe at boot to autoload it
	"virtio_net", "virtio_rng",
	"8021q",
	// The EFI system partition: vfat's default mount options want code
	// page 437 and the ascii I/O charset (the kernel's FAT defaults).
	"vfat", "nls_cp437", "nls_ascii",
	"efivarfs", // systemd-boot's variables: the one-shot trial boot, the default slot
	"softdog",  // the watchdog PID 1 pets (the cloud kernel has no i6300esb driver)
}

// Spec is what goes into an image.
type Spec struct {
	KernelRoot string   // unpacked kernel package: KernelRoot/lib/modules/<Release>
	Release    string   // kernel release, e.g. 6.1.0-56-cloud-amd64
	Binary     string   // the static gatehouse binary, installed as /init
	Config     string   // default config, installed as /etc/gatehouse/gatehouse.yaml
	CACerts    string   // CA bundle, installed as /etc/ssl/certs/ca-certificates.crt
	Modules    []string // module names to load at boot
}

// Initramfs writes the gzip-compressed newc cpio archive for spec and
// returns the module files it included.
func Initramfs(spec Spec, out string) ([]string, error) {
	recs, mods, err := records(spec)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w := cpio.Newc.Writer(zw)
	cpio.MakeAllReproducible(recs)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return nil, fmt.Errorf("image: write cpio: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("image: write cpio trailer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := safeio.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return mods, fmt.Errorf("image: %w", err)
	}
	return mods, nil
}

func records(spec Spec) ([]cpio.Record, []string, error) {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("image: %w", err)
		}
		return string(b), nil
	}
	bin, err := read(spec.Binary)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := read(spec.Config)
	if err != nil {
		return nil, nil, err
	}
	ca, err := read(spec.CACerts)
	if err != nil {
		return nil, nil, err
	}
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		// The kernel opens /dev/console for init before devtmpfs is mounted.
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.Directory("proc", 0o555),
		cpio.Directory("sys", 0o555),
		cpio.Directory("run", 0o755),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("data", 0o755),
		cpio.StaticFile("init", bin, 0o755),
		cpio.StaticFile("etc/gatehouse/gatehouse.yaml", cfg, 0o644),
		cpio.StaticFile("etc/ssl/certs/ca-certificates.crt", ca, 0o644),
		cpio.StaticFile("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0o644),
	}
	modRecs, files, err := moduleRecords(spec)
	if err != nil {
		return nil, nil, err
	}
	return append(recs, modRecs...), files, nil
}

// moduleRecords selects the modules and everything they depend on, and a
// modules.dep that covers exactly those.
func moduleRecords(spec Spec) ([]cpio.Record, []string, error) {
	modDir := filepath.Join(spec.KernelRoot, "lib/modules", spec.Release)
	deps, err := readModulesDep(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]string{} // module name -> path in modules.dep
	for p := range deps {
		byName[moduleName(p)] = p
	}
	want := map[string]bool{}
	for _, m := range spec.Modules {
		p, ok := byName[normalize(m)]
		if !ok {
			return nil, nil, fmt.Errorf("image: kernel %s has no module %s", spec.Release, m)
		}
		want[p] = true
		for _, d := range deps[p] {
			want[d] = true
		}
	}
	files := make([]string, 0, len(want))
	for p := range want {
		files = append(files, p)
	}
	sort.Strings(files)

	base := path.Join("lib/modules", spec.Release)
	var recs []cpio.Record
	var dep strings.Builder
	for _, p := range files {
		b, err := os.ReadFile(filepath.Join(modDir, p))
		if err != nil {
			return nil, nil, fmt.Errorf("image: %w", err)
		}
		recs = append(recs, cpio.StaticFile(path.Join(base, p), string(b), 0o644))
		fmt.Fprintf(&dep, "%s:", p)
		for _, d := range deps[p] {
			dep.WriteString(" " + d)
		}
		dep.WriteString("\n")
	}
	builtin, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return nil, nil, fmt.Errorf("image: %w", err)
	}
	recs = append(recs,
		cpio.StaticFile(path.Join(base, "modules.dep"), dep.String(), 0o644),
		cpio.StaticFile(path.Join(base, "modules.builtin"), string(builtin), 0o644),
		cpio.StaticFile(path.Join(base, "gatehouse.modules"), strings.Join(spec.Modules, "\n")+"\n", 0o644),
	)
	return recs, files, nil
}

// readModulesDep parses depmod's modules.dep: "path: dep dep ...".
func readModulesDep(file string) (map[string][]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
	}
	return deps, sc.Err()
}

// moduleName is the name of a module file: kernel/net/8021q/8021q.ko.xz -> 8021q.
func moduleName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return normalize(b)
}

// normalize treats '-' and '_' alike, as the kernel does in module names.
func normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// DataDisk creates an empty ext4 data disk labelled label, unless the file
// exists already: a disk carries the appliance's state from run to run.
func DataDisk(file, label, size string) (created bool, err error) {
	return dataDiskFrom(file, label, size, "")
}

// dataDiskFrom is DataDisk holding a copy of dir ("" for empty).
func dataDiskFrom(file, label, size, dir string) (created bool, err error) {
	if _, err := os.Stat(file); err == nil {
		return false, nil
	}
	tmp := file + ".tmp"
	os.Remove(tmp)
	args := []string{"-q", "-F", "-L", label, "-E", "root_owner=0:0"}
	if dir != "" {
		args = append(args, "-d", dir)
	}
	out, err := exec.Command("mkfs.ext4", append(args, tmp, size)...).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("image: mkfs.ext4: %v: %s", err, out)
	}
	return true, os.Rename(tmp, file)
}
