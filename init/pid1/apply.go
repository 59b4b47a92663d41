package pid1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"gatehouse/config"
	"gatehouse/safeio"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// Commit-confirm: a new config is applied at once, and the previous one is
// kept beside it until `config confirm`. If the confirmation does not come
// in time (the operator has locked himself out, say), or the appliance
// restarts first, the previous config comes back. The file next to the
// config is the record of an unconfirmed apply, so a reboot rolls back too.

// rollbackSuffix names the saved previous config.
const rollbackSuffix = ".rollback"

// configTarget is the file an applied config replaces.
func (a *appliance) configTarget() string {
	if a.opts.PID1 {
		return pid1Configs[0]
	}
	return a.opts.ConfigPath
}

// Apply implements control.Backend. On a cluster node the config goes to
// the cluster (through its leader), which has every node install it with
// ApplyLocal; on a node not in a cluster yet it is applied here.
func (a *appliance) Apply(file string, confirmWithin time.Duration) error {
	// Host names are looked up now: a peer that does not resolve is an
	// error at its line, before anything changes.
	if _, _, err := config.LoadResolved(context.Background(), file, a.resolver()); err != nil {
		return err // nothing changed
	}
	if done, err := a.toCluster(status.ClusterRequest{Verb: "propose", File: file, Within: confirmWithin}); done {
		return err
	}
	return a.applyHere(file, confirmWithin)
}

// ApplyLocal implements control.LocalApplier: a config for this node
// alone, the cluster service's or the operator's. A pending apply gives
// way to it (the cluster's rollback or a newer version).
func (a *appliance) ApplyLocal(file string, confirmWithin time.Duration) error {
	if _, _, err := config.Load(file); err != nil {
		return err // validated with its host names where it was applied
	}
	a.applyMu.Lock()
	if a.pending != nil {
		a.pending.Stop()
		a.pending = nil
		a.confirmBy.Store(nil)
		os.Remove(a.configTarget() + rollbackSuffix)
	}
	a.applyMu.Unlock()
	return a.applyHere(file, confirmWithin)
}

// ConfirmLocal implements control.LocalApplier.
func (a *appliance) ConfirmLocal() error { return a.confirmHere() }

// toCluster hands a request to the cluster service when this appliance
// is a cluster node; done is false when it is not (or not yet) in one.
func (a *appliance) toCluster(req status.ClusterRequest) (done bool, err error) {
	a.mu.Lock()
	clustered := a.cfg.ClusterEnabled()
	a.mu.Unlock()
	if !clustered {
		return false, nil
	}
	var resp status.ClusterResponse
	if err := sockrpc.Call(a.paths.ClusterSocket(), 60*time.Second, req, &resp); err != nil {
		var de *sockrpc.DialError
		if errors.As(err, &de) {
			return true, fmt.Errorf("this node is in a cluster, but its cluster service does not answer (%v); `--local` changes this node alone", err)
		}
		return true, err
	}
	return !resp.NotJoined, nil
}

func (a *appliance) applyHere(file string, confirmWithin time.Duration) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	target := a.configTarget()
	rollback := target + rollbackSuffix
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	if a.pending != nil {
		return errors.New("an applied config is waiting for confirmation: confirm it first, or wait for the rollback")
	}
	old, err := os.ReadFile(target)
	if errors.Is(err, os.ErrNotExist) {
		old = nil // the built-in default was running: rolling back removes the file
	} else if err != nil {
		return err
	}
	if confirmWithin > 0 {
		// An empty rollback file stands for "there was no config file".
		if err := safeio.WriteFile(rollback, old, 0o600); err != nil {
			return fmt.Errorf("save the running config: %w", err)
		}
	}
	if err := safeio.WriteFile(target, data, 0o600); err != nil {
		return fmt.Errorf("install the new config: %w", err)
	}
	if err := a.reload(false); err != nil {
		a.restore(target, old)
		return fmt.Errorf("applied config did not load, previous one restored: %w", err)
	}
	if confirmWithin <= 0 {
		return nil
	}
	t := time.AfterFunc(confirmWithin, func() { a.rollback("not confirmed within " + confirmWithin.String()) })
	a.pending = t
	by := time.Now().Add(confirmWithin).UTC()
	a.confirmBy.Store(&by)
	a.log.Warn("config applied; it is rolled back unless confirmed", "subsystem", "init", "within", confirmWithin)
	return nil
}

// Confirm implements control.Backend: cluster-wide on a cluster node.
func (a *appliance) Confirm() error {
	if done, err := a.toCluster(status.ClusterRequest{Verb: "confirm"}); done {
		return err
	}
	return a.confirmHere()
}

func (a *appliance) confirmHere() error {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	if a.pending == nil {
		return errors.New("no applied config is waiting for confirmation")
	}
	if !a.pending.Stop() {
		return errors.New("too late: the config is being rolled back")
	}
	a.pending = nil
	a.confirmBy.Store(nil)
	os.Remove(a.configTarget() + rollbackSuffix)
	a.log.Info("applied config confirmed", "subsystem", "init")
	return nil
}

func (a *appliance) rollback(why string) {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.pending = nil
	a.confirmBy.Store(nil)
	target := a.configTarget()
	old, err := os.ReadFile(target + rollbackSuffix)
	if err != nil {
		a.log.Error("rollback: the saved config is gone", "subsystem", "init", "err", err)
		return
	}
	a.restore(target, old)
	if err := a.reload(false); err != nil { // the previous config, whatever DNS says now
		a.log.Error("rollback: reload", "subsystem", "init", "err", err)
	}
	a.log.Warn("applied config rolled back", "subsystem", "init", "why", why)
}

// restore puts the previous config back; nil means there was none.
func (a *appliance) restore(target string, old []byte) {
	if len(old) == 0 {
		os.Remove(target)
	} else if err := safeio.WriteFile(target, old, 0o600); err != nil {
		a.log.Error("restore the previous config", "subsystem", "init", "err", err)
	}
	os.Remove(target + rollbackSuffix)
}

// rollbackAtStart undoes an apply that was never confirmed before the
// appliance stopped.
func (a *appliance) rollbackAtStart() {
	target := a.configTarget()
	old, err := os.ReadFile(target + rollbackSuffix)
	if err != nil {
		return
	}
	a.restore(target, old)
	a.log.Warn("an applied config was never confirmed; the previous one is restored", "subsystem", "init")
}
