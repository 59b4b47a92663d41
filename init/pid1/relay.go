package pid1

import (
	"fmt"
	"log/slog"
	"os"
	"slices"

	"gatehouse/init/supervisor"
	"gatehouse/services/relay"
	"gatehouse/status"

	"golang.org/x/sys/unix"
)

// RelayID is who the relay runs as.
type RelayID struct{ UID, GID uint32 }

// DefaultRelayID is the relay's user on the appliance (relay.RelayUser).
var DefaultRelayID = RelayID{UID: relay.RelayUID, GID: relay.RelayGID}

// relayUser is the user the relay runs as: its own, with no capability but
// binding ports below 1024. nil when this process is not root (host mode
// as an ordinary user): there is nothing to drop, and the relay runs as
// that user.
func (a *appliance) relayUser() *supervisor.User {
	if os.Geteuid() != 0 {
		return nil
	}
	id := DefaultRelayID
	if a.opts.RelayID != nil {
		id = *a.opts.RelayID
	}
	return &supervisor.User{UID: id.UID, GID: id.GID, Caps: []uintptr{unix.CAP_NET_BIND_SERVICE}}
}

// withRelayUser has the smtp service run as the relay's user, and gives it
// before every start what it cannot take itself (relay.Prepare).
func (a *appliance) withRelayUser(svc supervisor.Service) supervisor.Service {
	u := a.relayUser()
	if u == nil {
		return svc
	}
	svc.User = u
	svc.Prepare = func() error {
		a.mu.Lock()
		cfg := a.cfg
		a.mu.Unlock()
		return relay.Prepare(relay.PathsFor(a.paths.Run, a.opts.PID1), cfg, a.runtimeConfig(), int(u.UID), int(u.GID),
			a.log.With("subsystem", "init", "service", "smtp"))
	}
	return svc
}

// grantRelay lets the relay read the new config copy and the files it
// names before it is told to re-read them (reload). A relay whose section
// the new config removes still reads it: it closes its listeners and goes
// on delivering its queue.
func (a *appliance) grantRelay(log *slog.Logger) {
	u := a.relayUser()
	if u == nil {
		return
	}
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	running := slices.ContainsFunc(a.sup.Snapshot(), func(s status.State) bool { return s.Name == "smtp" })
	if !running && !cfg.SMTPEnabled() {
		return
	}
	log = log.With("service", "smtp")
	if err := relay.GrantConfig(a.paths.Run, a.runtimeConfig(), int(u.UID), int(u.GID)); err != nil {
		log.Error("the relay cannot read its new config", "err", err)
	}
	relay.Grant(cfg, int(u.UID), int(u.GID), log)
}

// protectLinks has the kernel refuse a hard link to a file its maker
// cannot read and write, and following another user's symbolic link in a
// sticky directory, as systemd sets them on other distributions. The relay
// owns directories on /data: it must not be able to plant there a link to a
// file of root's that PID 1 then changes for it.
func protectLinks(log *slog.Logger) {
	for _, f := range []string{"/proc/sys/fs/protected_hardlinks", "/proc/sys/fs/protected_symlinks"} {
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			log.Warn(fmt.Sprintf("could not set %s", f), "err", err)
		}
	}
}
