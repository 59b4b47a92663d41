// Command bootbench boots the image several times and prints the median
// boot times as name=value lines (`make bench-boot`). In the same run it
// boots the same kernel with a trivial static init that only says hello
// and powers off, the floor any init could reach, and prints the ratio.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gatehouse/image/qemu"
	"gatehouse/init/pid1"

	"github.com/u-root/u-root/pkg/cpio"
)

func main() {
	dir := flag.String("image", "build/image", "image directory")
	bin := flag.String("binary", "build/gatehouse", "the gatehouse binary, for its size")
	n := flag.Int("n", 5, "boots of each kind")
	extra := flag.String("append", "", "extra kernel command line")
	flag.Parse()
	if err := run(*dir, *bin, *n, *extra); err != nil {
		fmt.Fprintln(os.Stderr, "bootbench:", err)
		os.Exit(1)
	}
}

func run(dir, bin string, n int, extra string) error {
	tmp, err := os.MkdirTemp("", "bootbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	trivial, err := trivialInitramfs(tmp)
	if err != nil {
		return err
	}
	kernel := filepath.Join(dir, "vmlinuz")
	var qemuMS, pid1MS, trivialMS []float64
	for i := range n {
		data := filepath.Join(tmp, "data.img")
		os.Remove(data)
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", pid1.DataLabel, data, "64M").CombinedOutput(); err != nil {
			return fmt.Errorf("mkfs.ext4: %v: %s", err, out)
		}
		q, p, err := bootGatehouse(qemu.Options{Kernel: kernel, Initramfs: filepath.Join(dir, "initramfs.cpio.gz"), Data: data, Append: extra})
		if err != nil {
			return fmt.Errorf("boot %d: %w", i+1, err)
		}
		t, err := bootTrivial(qemu.Options{Kernel: kernel, Initramfs: trivial, Append: extra})
		if err != nil {
			return fmt.Errorf("trivial boot %d: %w", i+1, err)
		}
		fmt.Printf("boot=%d qemu_to_ready_ms=%.0f pid1_to_ready_ms=%.0f trivial_qemu_to_init_ms=%.0f\n", i+1, q, p, t)
		qemuMS, pid1MS, trivialMS = append(qemuMS, q), append(pid1MS, p), append(trivialMS, t)
	}
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return st.Size()
	}
	fmt.Printf("boots=%d\n", n)
	fmt.Printf("qemu_to_ready_ms=%.0f\n", median(qemuMS))
	fmt.Printf("pid1_to_ready_ms=%.0f\n", median(pid1MS))
	fmt.Printf("trivial_init_qemu_to_init_ms=%.0f\n", median(trivialMS))
	fmt.Printf("boot_ratio_vs_trivial_init=%.2f\n", median(qemuMS)/median(trivialMS))
	fmt.Printf("binary_bytes=%d\n", size(bin))
	fmt.Printf("initramfs_bytes=%d\n", size(filepath.Join(dir, "initramfs.cpio.gz")))
	return nil
}

func bootGatehouse(o qemu.Options) (qemuMS, pid1MS float64, err error) {
	v, err := qemu.Start(o)
	if err != nil {
		return 0, 0, err
	}
	defer v.Kill()
	m, err := v.Expect(`gatehouse: ready in (\d+) ms`, 2*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	qemu := time.Since(v.Started)
	p, _ := strconv.Atoi(m[1])
	v.Send("poweroff\n")
	if err := v.Wait(time.Minute); err != nil {
		return 0, 0, fmt.Errorf("no poweroff: %w", err)
	}
	return float64(qemu.Microseconds()) / 1000, float64(p), nil
}

func bootTrivial(o qemu.Options) (float64, error) {
	v, err := qemu.Start(o)
	if err != nil {
		return 0, err
	}
	defer v.Kill()
	if _, err := v.Expect(`trivial init: hello`, 2*time.Minute); err != nil {
		return 0, err
	}
	d := time.Since(v.Started)
	v.Wait(time.Minute)
	return float64(d.Microseconds()) / 1000, nil
}

// trivialInitramfs builds an initramfs whose /init is a static program that
// prints one line and powers off.
func trivialInitramfs(tmp string) (string, error) {
	src := filepath.Join(tmp, "trivial")
	os.MkdirAll(src, 0o755)
	prog := `package main

import (
	"os"
	"syscall"
)

func main() {
	os.Stdout.WriteString("trivial init: hello\n")
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
`
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(prog), 0o644); err != nil {
		return "", err
	}
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module trivial\n\ngo 1.22\n"), 0o644)
	binPath := filepath.Join(tmp, "trivial-init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binPath, ".")
	cmd.Dir, cmd.Env = src, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build trivial init: %v: %s", err, out)
	}
	b, err := os.ReadFile(binPath)
	if err != nil {
		return "", err
	}
	out := filepath.Join(tmp, "trivial.cpio")
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	defer f.Close()
	w := cpio.Newc.Writer(f)
	recs := []cpio.Record{cpio.Directory("dev", 0o755), cpio.CharDev("dev/console", 0o600, 5, 1), cpio.StaticFile("init", string(b), 0o755)}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return "", err
	}
	return out, cpio.WriteTrailer(w)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
