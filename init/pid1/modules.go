package pid1

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// ModuleList names the file, in /lib/modules/<release>/, that lists the
// modules the image carries for loading at boot, one per line. The image
// builder writes it together with a modules.dep covering them.
const ModuleList = "gatehouse.modules"

// dataModules are loaded first: a data disk on virtio-blk needs them. (NVMe
// is built into the kernel, so a data disk there is found without waiting.)
// Everything loads alongside the rest of the boot; what needs a module waits
// for modules.done.
var dataModules = []string{"virtio_pci", "virtio_blk"}

// modules is the boot's kernel module loading.
type modules struct {
	prober    *kmodule.Prober
	names     []string
	data      chan struct{} // closed when dataModules have been tried
	netfilter chan struct{} // closed when the nf* modules have been tried
	done      chan struct{} // closed when every listed module has been tried
	loaded    []string
	failed    []string
	took      time.Duration
}

// openModules reads the image's module list and modules.dep.
func openModules() (*modules, error) {
	m := &modules{data: make(chan struct{}), netfilter: make(chan struct{}), done: make(chan struct{})}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	f, err := os.Open(filepath.Join("/lib/modules", release, ModuleList))
	if err != nil {
		return nil, fmt.Errorf("module list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name := strings.TrimSpace(sc.Text()); name != "" && !strings.HasPrefix(name, "#") {
			m.names = append(m.names, name)
		}
	}
	if m.prober, err = kmodule.NewProber(kmodule.ProbeOpts{}); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return m, sc.Err()
}

// load loads the modules in the background, the data disk's first. A module
// that fails is reported and skipped: the appliance boots with what it has.
func (m *modules) load(log *slog.Logger) {
	start := time.Now()
	var early, netfilter, late []string
	for _, n := range m.names {
		switch {
		case slices.Contains(dataModules, n):
			early = append(early, n)
		case strings.HasPrefix(n, "nf"):
			netfilter = append(netfilter, n)
		default:
			late = append(late, n)
		}
	}
	go func() {
		defer close(m.done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		m.probe(early, log)
		close(m.data)
		// The firewall waits for netfilter before the appliance is ready.
		m.probe(netfilter, log)
		close(m.netfilter)
		// Nothing waits for the rest: lowest CPU priority.
		unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		m.probe(late, log)
		m.took = time.Since(start)
		log.Info("loaded kernel modules", "loaded", len(m.loaded), "failed", len(m.failed), "took", m.took.Round(time.Millisecond))
	}()
}

func (m *modules) probe(names []string, log *slog.Logger) {
	for _, name := range names {
		if err := m.prober.Probe(name, ""); err != nil {
			log.Warn("kernel module not loaded", "module", name, "err", err)
			m.failed = append(m.failed, name)
			continue
		}
		m.loaded = append(m.loaded, name)
	}
}
