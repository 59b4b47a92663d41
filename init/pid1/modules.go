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
	"sync"
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
	mu        sync.Mutex    // loaded and failed, from two loaders
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
	// The data disk's drivers and netfilter load side by side: both are
	// on the way to ready (the config, the firewall).
	var nf sync.WaitGroup
	nf.Add(1)
	go func() {
		defer nf.Done()
		defer close(m.netfilter)
		// The firewall waits for netfilter before the appliance is ready.
		m.probeAll(netfilter, log)
	}()
	go func() {
		defer close(m.done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		m.probeAll(early, log)
		close(m.data)
		nf.Wait()
		// Nothing waits for the rest: lowest CPU priority.
		unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		m.probe(late, log)
		m.took = time.Since(start)
		m.mu.Lock()
		loaded, failed := len(m.loaded), len(m.failed)
		m.mu.Unlock()
		log.Info("loaded kernel modules", "loaded", loaded, "failed", failed, "took", m.took.Round(time.Millisecond))
	}()
}

func (m *modules) probe(names []string, log *slog.Logger) {
	for _, name := range names {
		m.probeOne(name, log)
	}
}

func (m *modules) probeOne(name string, log *slog.Logger) {
	err := m.prober.Probe(name, "")
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.failed = append(m.failed, name)
		log.Warn("kernel module not loaded", "module", name, "err", err)
		return
	}
	m.loaded = append(m.loaded, name)
}

// probeAll loads names at once, for what the boot waits for.
func (m *modules) probeAll(names []string, log *slog.Logger) {
	// The prober is safe for concurrent use and loads a module's
	// dependencies first; the kernel's work (finit_module, with its
	// signature check) runs in parallel on the machine's CPUs.
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.probeOne(name, log)
		}()
	}
	wg.Wait()
}
