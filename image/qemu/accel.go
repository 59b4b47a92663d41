package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"gatehouse/safeio"
)

// Accelerators QEMU can run the guest with.
const (
	KVM = "kvm"
	TCG = "tcg"
)

// AccelEnv overrides the choice: GATEHOUSE_ACCEL=kvm or tcg.
const AccelEnv = "GATEHOUSE_ACCEL"

// probeTimeout bounds the KVM probe. Under a working KVM the kernel reaches
// its root-mount panic in about a second; a KVM that cannot run the guest
// (nested virtualisation) either aborts at once or hangs printing nothing.
const probeTimeout = 15 * time.Second

// Choice is the accelerator picked and, when KVM was passed over, why.
type Choice struct {
	Accel  string `json:"accel"`
	Reason string `json:"reason,omitempty"`
}

// Prober decides between KVM and TCG for one machine.
type Prober struct {
	QEMU    string        // QEMU binary; default qemu-system-x86_64
	KVMDev  string        // default /dev/kvm
	Cache   string        // file remembering the answer; "" for none
	Timeout time.Duration // default probeTimeout
	Env     string        // value of GATEHOUSE_ACCEL
}

// Choose picks the accelerator for booting kernel. KVM is used only when it
// actually boots a guest here: /dev/kvm existing is not enough, since a
// nested VM may expose it but fail to run the guest. The probe boots kernel
// without an initramfs, which must end in the kernel's "cannot mount root"
// panic and, with -no-reboot, a clean QEMU exit.
func (p Prober) Choose(kernel string) (Choice, error) {
	switch p.Env {
	case KVM, TCG:
		return Choice{Accel: p.Env, Reason: AccelEnv + "=" + p.Env}, nil
	case "":
	default:
		return Choice{}, fmt.Errorf("qemu: %s=%q: want kvm or tcg", AccelEnv, p.Env)
	}
	dev := p.KVMDev
	if dev == "" {
		dev = "/dev/kvm"
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return Choice{Accel: TCG, Reason: "no usable " + dev + ": " + errors.Unwrap(err).Error()}, nil
	}
	f.Close()
	key := p.cacheKey(dev)
	if c, ok := p.cached(key); ok {
		return c, nil
	}
	if kernel == "" {
		// A boot disk's VM may name no kernel of its own; guessing is
		// not worth remembering.
		return Choice{Accel: TCG, Reason: "no kernel to probe KVM with"}, nil
	}
	c, lasting := p.probe(kernel)
	if lasting {
		p.remember(key, c)
	}
	return c, nil
}

func (p Prober) qemu() string {
	if p.QEMU != "" {
		return p.QEMU
	}
	return "qemu-system-x86_64"
}

// probe boots the kernel under KVM. lasting says whether the answer
// holds for this machine: a guest that did not boot in time may only have
// met a busy machine, so that answer is not remembered.
func (p Prober) probe(kernel string) (c Choice, lasting bool) {
	timeout := p.Timeout
	if timeout == 0 {
		timeout = probeTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.qemu(),
		"-accel", KVM, "-cpu", "host", "-m", "128", "-nodefaults",
		"-kernel", kernel, "-append", "console=ttyS0 panic=-1 quiet",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-nic", "none", "-no-reboot")
	// A hung QEMU (or a stand-in script's children) goes with its group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	switch {
	case ctx.Err() != nil:
		return Choice{Accel: TCG, Reason: fmt.Sprintf("a KVM guest did not boot within %v", timeout)}, false
	case err != nil:
		return Choice{Accel: TCG, Reason: qemuError(out.Bytes(), err)}, true
	case !bytes.Contains(out.Bytes(), []byte("Kernel panic")):
		return Choice{Accel: TCG, Reason: "a KVM guest exited without booting its kernel"}, true
	}
	return Choice{Accel: KVM}, true
}

// qemuError is the line of QEMU's output that says what went wrong.
func qemuError(out []byte, err error) string {
	var last string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "qemu-system-x86_64:"))
		if strings.HasPrefix(l, "error:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "error:"))
		}
		if l != "" {
			last = l
		}
	}
	if last != "" {
		return last
	}
	return err.Error()
}

// cacheKey names what the probe's answer depends on: this QEMU, this host
// kernel and this CPU. A new machine or an upgraded QEMU probes again.
func (p Prober) cacheKey(dev string) string {
	var b strings.Builder
	if path, err := exec.LookPath(p.qemu()); err == nil {
		if st, err := os.Stat(path); err == nil {
			fmt.Fprintf(&b, "%s %d %d;", path, st.Size(), st.ModTime().UnixNano())
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		fmt.Fprintf(&b, "%s;", utsString(u.Release[:]))
	}
	if cpu, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(cpu), "\n") {
			if strings.HasPrefix(l, "model name") {
				b.WriteString(strings.TrimSpace(l))
				break
			}
		}
	}
	return b.String()
}

func utsString(cs []int8) string {
	b := make([]byte, 0, len(cs))
	for _, c := range cs {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

type cacheEntry struct {
	Key string `json:"key"`
	Choice
}

func (p Prober) cached(key string) (Choice, bool) {
	if p.Cache == "" {
		return Choice{}, false
	}
	data, err := os.ReadFile(p.Cache)
	if err != nil {
		return Choice{}, false
	}
	var e cacheEntry
	if json.Unmarshal(data, &e) != nil || e.Key != key || (e.Accel != KVM && e.Accel != TCG) {
		return Choice{}, false
	}
	return e.Choice, true
}

// remember writes the answer; a cache that cannot be written only costs a
// probe next time.
func (p Prober) remember(key string, c Choice) {
	if p.Cache == "" {
		return
	}
	data, _ := json.Marshal(cacheEntry{Key: key, Choice: c})
	if os.MkdirAll(filepath.Dir(p.Cache), 0o755) != nil {
		return
	}
	safeio.WriteFile(p.Cache, data, 0o644)
}

// DefaultCache is where the machine's answer is kept between runs.
func DefaultCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "gatehouse", "qemu-accel.json")
}

// chosen remembers the answer for the rest of this process, so that a test
// run booting many VMs probes (and says so) once.
var chosen struct {
	sync.Mutex
	done bool
	c    Choice
}

// ChooseAccel picks the accelerator for this machine once per process,
// honouring GATEHOUSE_ACCEL, and says on w when KVM is passed over.
func ChooseAccel(kernel string, w io.Writer) (string, error) {
	chosen.Lock()
	defer chosen.Unlock()
	if chosen.done {
		return chosen.c.Accel, nil
	}
	c, err := Prober{Cache: DefaultCache(), Env: os.Getenv(AccelEnv)}.Choose(kernel)
	if err != nil {
		return "", err
	}
	if c.Accel == TCG && c.Reason != AccelEnv+"="+TCG && w != nil {
		if _, err := os.Stat("/dev/kvm"); err == nil {
			fmt.Fprintf(w, "qemu: KVM unusable here (%s), using TCG\n", c.Reason)
		}
	}
	chosen.done, chosen.c = true, c
	return c.Accel, nil
}
