package pid1

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sys/unix"

	"gatehouse/control"
	"gatehouse/safeio"
	"gatehouse/status"
	"gatehouse/update"
)

// The A/B firmware: which slot this boot came from (the boot entry's
// gatehouse.slot=), the single trial boot of a new firmware, and the
// record of the last update on the data disk, so that the firmware an
// update fell back to can say why.
type firmware struct {
	mu      sync.Mutex
	slot    string // a or b; "" when not booted from the disk image
	def     string // the slot the boot loader picks by default
	trial   bool
	esp     *update.ESP
	problem string // why no update can be installed now
	last    *updateState

	updating sync.Mutex // one update at a time
	// known is closed once this boot's slot, default and trial are known
	// (the modules for the ESP and the EFI variables load in the
	// background, and may finish after ready).
	known     chan struct{}
	knownOnce sync.Once
}

// settled marks the firmware's state as known.
func (f *firmware) settled() { f.knownOnce.Do(func() { close(f.known) }) }

// updateState is /data/update/state.json: the last update, as far as it
// got. Each step is written before the next begins.
type updateState struct {
	// Phase: pending (the slot is being written), armed (written, the
	// trial boot armed), trial (the new firmware booted and is on
	// trial), failed-in-trial (it gave up and rebooted), failed (the old
	// firmware came back), done (the new one is the default).
	Phase   string    `json:"phase"`
	From    slotInfo  `json:"from"`
	To      slotInfo  `json:"to"`
	Started time.Time `json:"started"`
	Booted  time.Time `json:"booted,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	Reason  string    `json:"reason,omitempty"`
}

type slotInfo struct {
	Slot    string `json:"slot"`
	Version string `json:"version"`
	Built   int64  `json:"built"`
}

const (
	espMountDir   = "esp" // in the run directory
	updateDirName = "update"
)

// bootSlot reads gatehouse.slot= from the kernel command line.
func bootSlot() string {
	b, _ := os.ReadFile("/proc/cmdline")
	return slotOf(string(b))
}

// slotOf finds gatehouse.slot= among the words of a kernel command line
// (systemd-boot puts initrd= first).
func slotOf(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "gatehouse.slot="); ok && (v == "a" || v == "b") {
			return v
		}
	}
	return ""
}

func (a *appliance) stateFile() string {
	return filepath.Join(a.paths.Data(), updateDirName, "state.json")
}

func (a *appliance) readUpdateState() *updateState {
	b, err := os.ReadFile(a.stateFile())
	if err != nil {
		return nil
	}
	var st updateState
	if json.Unmarshal(b, &st) != nil {
		return nil
	}
	return &st
}

// saveUpdateState writes st durably before the step it describes.
func (a *appliance) saveUpdateState(st *updateState) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.MkdirAll(filepath.Dir(a.stateFile()), 0o700); err != nil {
		return err
	}
	if err := safeio.WriteFile(a.stateFile(), b, 0o600); err != nil {
		return fmt.Errorf("update state: %w", err)
	}
	a.fw.mu.Lock()
	a.fw.last = st
	a.fw.mu.Unlock()
	return nil
}

// startFirmware finds out how this boot came about, once the modules are
// in (vfat, efivarfs, softdog): a trial of a new firmware, the old one
// back after a trial failed, or an ordinary boot.
func (a *appliance) startFirmware(ctx context.Context, log *slog.Logger) {
	defer a.fw.settled()
	slot := bootSlot()
	if slot == "" {
		return // kernel and initramfs handed over directly: no slots
	}
	a.fw.mu.Lock()
	a.fw.slot = slot
	a.fw.mu.Unlock()
	if a.modules != nil {
		<-a.modules.done
	}
	go guard(a.log, "watchdog", func() { a.watchdog(ctx, log) })
	if err := unix.Mount("efivarfs", update.EFIVarsDir, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil && err != unix.EBUSY {
		a.firmwareProblem(log, fmt.Sprintf("EFI variables: mount efivarfs: %v", err))
	}
	st := a.readUpdateState()
	// The default slot: systemd-boot's LoaderEntryDefault, else
	// loader.conf's, slot a. A boot is a trial only when the update
	// record says this slot was installed and armed, and the boot loader
	// does not have it as its default: EFI variables that cannot be read
	// never make a boot a trial (a trial that cannot be judged would
	// reboot forever).
	def, efiErr := "a", error(nil)
	if v, ok, err := update.EFIVar(update.EFIVarsDir, update.LoaderEntryDefault); err != nil {
		efiErr = err
		a.firmwareProblem(log, fmt.Sprintf("EFI variables: %v", err))
	} else if ok {
		def = strings.TrimSuffix(strings.TrimPrefix(v, "gatehouse-"), ".conf")
	}
	installed := st != nil && st.To.Slot == slot && (st.Phase == "pending" || st.Phase == "armed" || st.Phase == "trial")
	trial := installed && efiErr == nil && def != slot
	if installed && def == slot && efiErr == nil {
		// The trial passed and made itself the default, and the power
		// went before the record said so.
		st.Phase, st.Ended = "done", time.Now().UTC()
		a.saveUpdateState(st)
	}
	if trial {
		// Spent by the boot loader already; a firmware that did not spend it
		// must not boot this slot again after a failed trial.
		update.DeleteEFIVar(update.EFIVarsDir, update.LoaderEntryOneShot)
	}
	a.fw.mu.Lock()
	a.fw.def, a.fw.trial = def, trial
	a.fw.mu.Unlock()
	dir := filepath.Join(a.paths.Run, espMountDir)
	if dev, err := update.FindESP(); err != nil {
		a.firmwareProblem(log, fmt.Sprintf("EFI system partition: %v", err))
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		a.firmwareProblem(log, err.Error())
	} else if err := update.MountESP(dev, dir); err != nil {
		a.firmwareProblem(log, fmt.Sprintf("EFI system partition %s: %v", dev, err))
	} else {
		a.fw.mu.Lock()
		a.fw.esp = &update.ESP{Dir: dir}
		a.fw.mu.Unlock()
	}

	switch {
	case trial:
		st.Phase, st.Booted = "trial", time.Now().UTC()
		if err := a.saveUpdateState(st); err != nil {
			log.Error("update: record the trial", "err", err)
		}
		log.Warn("trial boot of a new firmware: it becomes the default once it is ready and stays healthy", "slot", slot, "version", st.To.Version)
		go guard(a.log, "update trial", func() { a.runTrial(ctx, st, log) })
	case st != nil && st.To.Slot != slot && st.Phase != "failed" && st.Phase != "done" && st.From.Slot == slot:
		st.Phase, st.Ended, st.Reason = "failed", time.Now().UTC(), failureReason(st)
		if err := a.saveUpdateState(st); err != nil {
			log.Error("update: record the failure", "err", err)
		}
		report := control.UpdateReport{Version: st.To.Version, Slot: st.To.Slot, Phase: st.Phase, Reason: st.Reason, At: st.Ended}
		fmt.Fprintf(a.out, "gatehouse: %s; running slot %s (%s)\n", report, slot, a.opts.Version)
		log.Error(report.String(), "slot", slot)
	default:
		a.fw.mu.Lock()
		a.fw.last = st
		a.fw.mu.Unlock()
	}
}

// failureReason says why a trial that this firmware came back from
// failed, from how far the record got.
func failureReason(st *updateState) string {
	switch st.Phase {
	case "pending":
		return "interrupted while the new firmware was being written (the old one was never at risk); install it again"
	case "armed":
		return "the new firmware never reached its data disk: the kernel or PID 1 failed early (a panic, a missing driver)"
	case "trial":
		return fmt.Sprintf("the new firmware booted at %s but stopped before its trial ended: it crashed, hung (reset by the watchdog) or lost power",
			st.Booted.Format(time.RFC3339))
	case "failed-in-trial":
		return st.Reason
	}
	return "unknown (update record in phase " + st.Phase + ")"
}

func (f *firmware) problemText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.problem
}

func (a *appliance) firmwareProblem(log *slog.Logger, p string) {
	a.fw.mu.Lock()
	a.fw.problem = p
	a.fw.mu.Unlock()
	log.Error("firmware updates unavailable", "why", p)
}

// runTrial judges the trial boot: ready within the config's
// update.ready_timeout, then healthy for update.trial_period (every
// service up, none restarting, the data disk read-write). Passed, this
// slot becomes the boot loader's default; failed, the appliance reboots,
// and the boot loader, whose one-shot entry is spent, starts the old
// firmware.
func (a *appliance) runTrial(ctx context.Context, st *updateState, log *slog.Logger) {
	a.mu.Lock()
	readyTimeout, period := a.cfg.Update.ReadyTimeout.Duration, a.cfg.Update.TrialPeriod.Duration
	a.mu.Unlock()
	fail := func(why string) {
		st.Phase, st.Reason, st.Ended = "failed-in-trial", why, time.Now().UTC()
		a.saveUpdateState(st)
		log.Error("trial boot failed; rebooting into the previous firmware", "why", why)
		fmt.Fprintf(a.out, "gatehouse: trial of %s failed: %s; rebooting into the previous firmware\n", st.To.Version, why)
		a.Shutdown("reboot")
	}
	if a.data.readOnly || !a.data.mounted {
		fail("the data disk is not mounted read-write: " + a.data.problem)
		return
	}
	left := readyTimeout - time.Since(a.opts.Started)
	select {
	case <-ctx.Done():
		return
	case <-a.sup.Ready():
	case <-time.After(max(left, 0)):
		var waiting []string
		for _, s := range a.sup.Snapshot() {
			if s.Phase != status.Running {
				waiting = append(waiting, s.Name+" ("+string(s.Phase)+")")
			}
		}
		fail(fmt.Sprintf("not ready within %s: waiting for %s", readyTimeout, strings.Join(waiting, ", ")))
		return
	}
	restarts := map[string]int{}
	for _, s := range a.sup.Snapshot() {
		restarts[s.Name] = s.Restarts
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	until := time.Now().Add(period)
	for time.Now().Before(until) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.stopping.Load() {
			// Someone shuts down during the trial: not judged. The next
			// boot is the old firmware, which says the trial did not end.
			log.Warn("trial boot not judged: the appliance is shutting down")
			return
		}
		for _, s := range a.sup.Snapshot() {
			if s.Restarts > restarts[s.Name] || s.Phase != status.Running {
				fail(fmt.Sprintf("service %s was not up all through the trial (%s, %d restarts, %s)", s.Name, s.Phase, s.Restarts, s.LastExit))
				return
			}
		}
	}
	if a.stopping.Load() {
		return
	}
	// loader.conf first, then the EFI variable: either alone already
	// boots this slot, and firmware that loses its variables keeps it.
	a.fw.mu.Lock()
	esp := a.fw.esp
	a.fw.mu.Unlock()
	if esp == nil {
		fail("the EFI system partition is not mounted: " + a.fw.problemText())
		return
	}
	if err := esp.SetDefault(st.To.Slot); err != nil {
		fail("could not make this slot loader.conf's default: " + err.Error())
		return
	}
	if err := update.SetEFIVar(update.EFIVarsDir, update.LoaderEntryDefault, update.EntryName(st.To.Slot)); err != nil {
		fail("could not make this slot the default: " + err.Error())
		return
	}
	a.fw.mu.Lock()
	a.fw.def, a.fw.trial = st.To.Slot, false
	a.fw.mu.Unlock()
	st.Phase, st.Ended = "done", time.Now().UTC()
	a.saveUpdateState(st)
	log.Info("trial passed: the new firmware is the default", "slot", st.To.Slot, "version", st.To.Version)
	fmt.Fprintf(a.out, "gatehouse: updated to %s: slot %s is the default\n", st.To.Version, st.To.Slot)
}

// firmwareStatus is the status's firmware part.
func (a *appliance) firmwareStatus() *control.Firmware {
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	if a.fw.slot == "" {
		return nil
	}
	f := &control.Firmware{Slot: a.fw.slot, DefaultSlot: a.fw.def, Version: a.opts.Version, Built: a.opts.Built,
		Trial: a.fw.trial, Problem: a.fw.problem}
	if st := a.fw.last; st != nil {
		at := st.Started
		for _, t := range []time.Time{st.Booted, st.Ended} {
			if !t.IsZero() {
				at = t
			}
		}
		f.Update = &control.UpdateReport{Version: st.To.Version, Slot: st.To.Slot, Phase: st.Phase, Reason: st.Reason, At: at}
	}
	return f
}

// Update implements control.Updater: verify the bundle against the
// built-in key, refuse a downgrade unless allowed, check the running
// config with the new firmware's own binary, write the inactive slot and
// arm a single trial boot of it. Nothing is written before all of that
// passed; the running slot is never touched.
func (a *appliance) Update(file string, allowDowngrade bool) error {
	a.fw.updating.Lock()
	defer a.fw.updating.Unlock()
	select {
	case <-a.fw.known:
	case <-time.After(2 * time.Minute):
		return errors.New("update: the boot has not found its slots yet (kernel modules still loading?)")
	}
	a.fw.mu.Lock()
	slot, esp, trial, problem := a.fw.slot, a.fw.esp, a.fw.trial, a.fw.problem
	a.fw.mu.Unlock()
	switch {
	case slot == "":
		return errors.New("update: this appliance was not booted from its disk image (make disk-image): it has no slots to update")
	case trial:
		return errors.New("update: this boot is the trial of a new firmware; update again once it passed")
	case esp == nil:
		return fmt.Errorf("update: %s", problem)
	}
	key, err := update.TrustedKey()
	if err != nil {
		return err
	}
	// A copy of its own, which only PID 1 writes: what is checked is what
	// is run and installed, whatever happens to file meanwhile.
	own := filepath.Join(a.paths.Data(), updateDirName, "bundle")
	if err := copyFile(file, own); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	defer os.Remove(own)
	file = own
	m, err := update.Verify(file, key)
	if err != nil {
		return err
	}
	if !panicReboots(m.Cmdline) {
		return fmt.Errorf("update: the bundle's command line %q has no panic=N (N > 0): a kernel panic on its trial would hang instead of falling back", m.Cmdline)
	}
	if !allowDowngrade {
		if err := update.CompareBuilt(a.opts.Built, m.Built); err != nil {
			return err
		}
	}
	if err := a.validateWithBundle(file, m); err != nil {
		return err
	}
	// An older update armed and never booted must not boot instead of
	// this one should the write below be cut short.
	if err := update.DeleteEFIVar(update.EFIVarsDir, update.LoaderEntryOneShot); err != nil {
		return fmt.Errorf("update: clear an earlier trial boot: %w", err)
	}
	target := update.ESP{}.Other(slot)
	st := &updateState{Phase: "pending", Started: time.Now().UTC(),
		From: slotInfo{Slot: slot, Version: a.opts.Version, Built: a.opts.Built},
		To:   slotInfo{Slot: target, Version: m.Version, Built: m.Built}}
	if err := a.saveUpdateState(st); err != nil {
		return err
	}
	a.log.Info("writing the firmware to the other slot", "subsystem", "init", "slot", target, "version", m.Version)
	if err := esp.WriteSlot(target, m, file); err != nil {
		st.Phase, st.Reason, st.Ended = "failed", "writing slot "+target+": "+err.Error(), time.Now().UTC()
		a.saveUpdateState(st)
		return fmt.Errorf("update: write slot %s: %w", target, err)
	}
	if err := update.SetEFIVar(update.EFIVarsDir, update.LoaderEntryOneShot, update.EntryName(target)); err != nil {
		st.Phase, st.Reason, st.Ended = "failed", "arming the trial boot: "+err.Error(), time.Now().UTC()
		a.saveUpdateState(st)
		return fmt.Errorf("update: arm the trial boot: %w", err)
	}
	st.Phase = "armed"
	if err := a.saveUpdateState(st); err != nil {
		return err
	}
	a.log.Warn("firmware update written; it boots once at the next reboot", "subsystem", "init", "slot", target, "version", m.Version)
	return nil
}

// validateWithBundle runs the new firmware's own `config validate` on the
// config on the data disk: a config the new version cannot read keeps the
// old version running.
func (a *appliance) validateWithBundle(bundle string, m update.Manifest) error {
	cfg := a.configTarget()
	if _, err := os.Stat(cfg); err != nil {
		return nil // the built-in default: the new firmware brings its own
	}
	dir := filepath.Join(a.paths.Run, updateDirName)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var initrd bytes.Buffer
	h := sha256.New()
	if err := update.Extract(bundle, update.InitrdName, io.MultiWriter(&initrd, h)); err != nil {
		return err
	}
	// Nothing of the bundle runs before it is known to be what was signed.
	for _, f := range m.Files {
		if f.Name == update.InitrdName && hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
			return fmt.Errorf("update: %s changed after it was verified", update.InitrdName)
		}
	}
	bin := filepath.Join(dir, "init")
	if err := extractInit(&initrd, bin); err != nil {
		return fmt.Errorf("update: the new firmware's binary: %w", err)
	}
	out, err := os.Create(filepath.Join(dir, "validate.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(bin, "config", "validate", "--no-resolve", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	child, err := a.reaper.Start(cmd) // the reaper, not cmd.Wait: PID 1 reaps every child
	if err != nil {
		return fmt.Errorf("update: run the new firmware's config validate: %w", err)
	}
	select {
	case <-child.Done():
	case <-time.After(time.Minute):
		child.Signal(unix.SIGKILL)
		<-child.Done()
		return errors.New("update: the new firmware's config validate did not finish within a minute")
	}
	if ex := child.Wait(); !ex.Status.Exited() || ex.Status.ExitStatus() != 0 {
		text, _ := os.ReadFile(out.Name())
		return fmt.Errorf("update refused: the new firmware cannot read the running config (%s):\n%s", ex, bytes.TrimSpace(text))
	}
	return nil
}

// extractInit copies /init out of a gzip-compressed cpio archive.
func extractInit(gz io.Reader, dst string) error {
	zr, err := gzip.NewReader(gz)
	if err != nil {
		return err
	}
	var raw bytes.Buffer
	if _, err := io.Copy(&raw, io.LimitReader(zr, 128<<20)); err != nil {
		return err
	}
	rr := cpio.Newc.Reader(bytes.NewReader(raw.Bytes()))
	for {
		rec, err := rr.ReadRecord()
		if err != nil {
			return fmt.Errorf("no /init in the initramfs: %w", err)
		}
		if rec.Name != "init" {
			continue
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize))); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}

// copyFile copies src to dst (mode 0600), synced.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// panicReboots says whether a kernel command line reboots on a panic
// (panic=N, N > 0).
func panicReboots(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "panic="); ok {
			n, err := strconv.Atoi(v)
			return err == nil && n > 0
		}
	}
	return false
}
