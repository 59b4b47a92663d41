// Package qemu boots the appliance image in QEMU and talks to its serial
// console, for the end-to-end tests, `make bench-boot` and `make run`.
package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Options describe one VM: either a kernel and initramfs booted directly,
// or a whole boot disk (Disk) booted by UEFI firmware.
type Options struct {
	Kernel    string // booted directly; with Disk only used to probe KVM
	Initramfs string
	Data      string // data disk image; "" for none
	DataBus   string // bus of Data or Disk: "nvme" (default) or "virtio"
	// Disk is a whole boot disk (make disk-image), booted by OVMF through
	// its own boot loader: no -kernel, -initrd or -append.
	Disk string
	// EFIVars is the VM's writable copy of OVMF's variable store
	// (NewEFIVars makes one). Kept per VM, EFI variables such as systemd-
	// boot's one-shot entry survive reboots and QEMU restarts.
	EFIVars string
	// Reboot lets a guest's reboot restart the VM in the same QEMU, the
	// console going on; otherwise QEMU exits (-no-reboot).
	Reboot    bool
	Append    string   // extra kernel command line (not with Disk: its boot entry has it)
	MemoryMiB int      // default 512
	CPUs      int      // default 2
	Nics      []string // netdev specs, each given a virtio NIC, e.g. "user,hostfwd=tcp:127.0.0.1:2525-:25"
	Monitor   string   // path of a Unix socket for the QEMU monitor; "" for none
	Extra     []string // more QEMU arguments
	Accel     string   // KVM or TCG; "" lets Start choose (ChooseAccel)
	Log       io.Writer
}

// Args returns QEMU's command line for o. Interactive says whether the
// console is a person's terminal (Ctrl-A X, reboots allowed).
func (o Options) Args(interactive bool) []string {
	mem, cpus := o.MemoryMiB, o.CPUs
	if mem == 0 {
		mem = 512
	}
	if cpus == 0 {
		cpus = 2
	}
	args := []string{"-m", fmt.Sprint(mem), "-smp", fmt.Sprint(cpus)}
	if o.Disk != "" {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+o.EFIVars)
	} else {
		args = append(args, "-kernel", o.Kernel, "-initrd", o.Initramfs,
			"-append", strings.TrimSpace("console=ttyS0 panic=-1 quiet "+o.Append))
	}
	// Entropy: without it getrandom(2), and with it every DHCP transaction
	// id and TLS key, waits for the kernel's pool, for many seconds under TCG.
	args = append(args, "-device", "virtio-rng-pci")
	if o.Accel == KVM {
		args = append(args, "-accel", KVM, "-cpu", "host")
	} else {
		args = append(args, "-accel", TCG)
	}
	if interactive {
		args = append(args, "-nographic", "-serial", "mon:stdio")
	} else {
		args = append(args, "-display", "none", "-serial", "stdio")
		if !o.Reboot {
			args = append(args, "-no-reboot")
		}
		if o.Monitor != "" {
			args = append(args, "-monitor", "unix:"+o.Monitor+",server,nowait")
		} else {
			args = append(args, "-monitor", "none")
		}
	}
	if o.Disk != "" {
		// First in OVMF's boot order: it would try the machine's empty
		// DVD drive first otherwise.
		if o.DataBus == "virtio" {
			args = append(args, "-drive", "file="+o.Disk+",format=raw,if=none,id=disk",
				"-device", "virtio-blk-pci,drive=disk,bootindex=0")
		} else {
			args = append(args, "-drive", "file="+o.Disk+",format=raw,if=none,id=disk",
				"-device", "nvme,drive=disk,serial=gatehouse-disk,bootindex=0")
		}
	}
	switch {
	case o.Data == "":
	case o.DataBus == "virtio":
		args = append(args, "-drive", "file="+o.Data+",format=raw,if=virtio")
	default:
		args = append(args, "-drive", "file="+o.Data+",format=raw,if=none,id=data",
			"-device", "nvme,drive=data,serial=gatehouse-data")
	}
	if len(o.Nics) == 0 {
		args = append(args, "-nic", "none")
	}
	for i, n := range o.Nics {
		// No option ROM: iPXE would add a second to every boot.
		args = append(args, "-netdev", fmt.Sprintf("%s,id=n%d", n, i),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,romfile=", i))
	}
	return append(args, o.Extra...)
}

// VM is a running QEMU with its console.
type VM struct {
	Started time.Time
	opts    Options
	cmd     *exec.Cmd
	stdin   io.WriteCloser

	mu     sync.Mutex
	cond   *sync.Cond
	out    []byte
	cursor int // Expect searches from here
	exited bool
	err    error
}

// OVMF's firmware (read-only) and the template of its variable store, from
// Debian's ovmf package: the 4 MiB builds, which keep more variables.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// NewEFIVars writes a fresh variable store to file, as a new machine's.
func NewEFIVars(file string) error {
	b, err := os.ReadFile(OVMFVars)
	if err != nil {
		return fmt.Errorf("qemu: %w (make deps installs ovmf)", err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}

// Start boots a VM.
func Start(o Options) (*VM, error) {
	if o.Disk != "" && o.EFIVars == "" {
		return nil, errors.New("qemu: a boot disk needs its VM's own EFI variable store (Options.EFIVars)")
	}
	if o.Accel == "" {
		accel, err := ChooseAccel(o.Kernel, os.Stderr)
		if err != nil {
			return nil, err
		}
		o.Accel = accel
	}
	cmd := exec.Command("qemu-system-x86_64", o.Args(false)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	v := &VM{opts: o, cmd: cmd, stdin: stdin}
	v.cond = sync.NewCond(&v.mu)
	v.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: start: %w", err)
	}
	go v.read(stdout)
	return v, nil
}

func (v *VM) read(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if v.opts.Log != nil {
				v.opts.Log.Write(buf[:n])
			}
			v.mu.Lock()
			v.out = append(v.out, buf[:n]...)
			v.cond.Broadcast()
			v.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	err := v.cmd.Wait()
	v.mu.Lock()
	v.exited, v.err = true, err
	v.cond.Broadcast()
	v.mu.Unlock()
}

// ErrExited means QEMU ended while something was still expected.
var ErrExited = errors.New("qemu: exited")

// Expect waits until the console output after the last match matches re,
// and returns the submatches. It gives up after timeout.
func (v *VM) Expect(re string, timeout time.Duration) ([]string, error) {
	rx := regexp.MustCompile(re)
	timer := time.AfterFunc(timeout, func() {
		v.mu.Lock()
		v.cond.Broadcast()
		v.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	v.mu.Lock()
	defer v.mu.Unlock()
	for {
		if loc := rx.FindSubmatchIndex(v.out[v.cursor:]); loc != nil {
			var groups []string
			for i := 0; i < len(loc); i += 2 {
				if loc[i] < 0 {
					groups = append(groups, "")
					continue
				}
				groups = append(groups, string(v.out[v.cursor+loc[i]:v.cursor+loc[i+1]]))
			}
			v.cursor += loc[1]
			return groups, nil
		}
		if v.exited {
			return nil, fmt.Errorf("%w waiting for %q (%v)", ErrExited, re, v.err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("qemu: %q not seen within %v", re, timeout)
		}
		v.cond.Wait()
	}
}

// Send types s on the console.
func (v *VM) Send(s string) error {
	_, err := io.WriteString(v.stdin, s)
	return err
}

// Output is everything the console printed so far.
func (v *VM) Output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return string(v.out)
}

// Seen waits until re matches anywhere in the output, before or after the
// last match, without moving where Expect searches from.
func (v *VM) Seen(re string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for v.Count(re) == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("qemu: %q not seen within %v", re, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Count is how often re matches the whole output so far.
func (v *VM) Count(re string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(regexp.MustCompile(re).FindAllIndex(v.out, -1))
}

// Wait waits for QEMU to exit by itself and returns its error, if any.
func (v *VM) Wait(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		v.mu.Lock()
		v.cond.Broadcast()
		v.mu.Unlock()
	})
	defer timer.Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for !v.exited {
		if time.Now().After(deadline) {
			return fmt.Errorf("qemu: qemu still running after %v", timeout)
		}
		v.cond.Wait()
	}
	return v.err
}

// Monitor sends one command to the QEMU monitor.
func (v *VM) Monitor(command string) error {
	if v.opts.Monitor == "" {
		return errors.New("qemu: no monitor socket")
	}
	c, err := net.DialTimeout("unix", v.opts.Monitor, 5*time.Second)
	if err != nil {
		return fmt.Errorf("qemu: monitor: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		return err
	}
	// Read the echo so the command has been taken before we hang up.
	var got bytes.Buffer
	buf := make([]byte, 1024)
	for !bytes.Contains(got.Bytes(), []byte(command)) {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return fmt.Errorf("qemu: monitor: %w", err)
		}
	}
	return nil
}

// Kill ends QEMU at once (a power cut).
func (v *VM) Kill() {
	v.cmd.Process.Kill()
	v.Wait(10 * time.Second)
}
