package relay

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"gatehouse/config"
	"gatehouse/layout"
)

// The relay's own user. It parses what the internet sends (SMTP, and POP3
// and IMAP in the collector), so it runs as nobody else's user, with no
// capability but CAP_NET_BIND_SERVICE (ports 25, 465, 587). The appliance
// has no user database: the name is for people, the numbers are what
// counts.
const (
	RelayUser = "gatehouse-relay"
	RelayUID  = 100
	RelayGID  = 100
)

// Paths are where the relay keeps its state and finds its socket.
type Paths struct {
	Run        string // the run directory PID 1 shares with the services (the config copy)
	Queue      string
	TLS        string // the generated certificate
	MTASTS     string // the MTA-STS policy cache
	TLSRPT     string // the TLS-RPT counts
	OAuth      string // refresh tokens as the providers rotate them
	Socket     string // the relay's control socket
	ResolvConf string // the resolvers for MX lookups
}

// PathsFor returns the relay's paths on the appliance, or in host mode,
// where everything lives in the state directory.
func PathsFor(runDir string, appliance bool) Paths {
	l := layout.For(runDir, appliance)
	return Paths{Run: runDir, Queue: l.Queue(), TLS: l.TLS(), MTASTS: l.MTASTS(), TLSRPT: l.TLSRPT(), OAuth: l.OAuth(), Socket: l.RelaySocket(), ResolvConf: l.ResolvConf()}
}

// Prepare gives the relay, before it starts as uid:gid, what it cannot
// take itself. In Postfix, smtpd opens what it needs as root and then
// runs as postfix; a Go process cannot drop root reliably itself (see
// supervisor.User), so here the launcher (PID 1, or `gatehouse run` as
// root) does the root part before the start:
//
//   - its directories (queue, TLS, MTA-STS cache, TLS-RPT counts,
//     socket) are made and owned by it; a
//     directory an older version left to root is chowned with all it
//     holds, once (the upgrade);
//   - the run directory is searchable for it;
//   - it may read the config copy and the files the config names (Grant).
func Prepare(p Paths, full *config.Config, configFile string, uid, gid int, log *slog.Logger) error {
	if err := openDir(p.Run, uid, gid); err != nil {
		return err
	}
	for _, dir := range []string{p.Queue, p.TLS, p.MTASTS, p.TLSRPT, p.OAuth, filepath.Dir(p.Socket)} {
		if err := ownDir(dir, uid, gid, log); err != nil {
			return err
		}
		if err := reachable(dir, uid, gid); err != nil {
			return err
		}
	}
	if err := GrantConfig(p.Run, configFile, uid, gid); err != nil {
		return err
	}
	Grant(full, uid, gid, log)
	return nil
}

// GrantConfig lets the relay enter the run directory and read the config
// copy PID 1 wrote there for it (anew at every reload).
func GrantConfig(runDir, file string, uid, gid int) error {
	if err := openDir(runDir, uid, gid); err != nil {
		return err
	}
	if _, err := grantRead(file, uid, gid); err != nil {
		return fmt.Errorf("smtp: the relay's config %s: %w", file, err)
	}
	return nil
}

// Grant lets the relay (uid:gid) read the files the config names that it
// reads: its certificate and key, extra CAs, smart host and fetch
// passwords. Those it cannot read yet get the relay's group and group
// read permission; nothing else about them changes. The launcher calls it
// before every start and again on every reload, before the relay re-reads
// its config: a file replaced since then is readable again after a
// reload.
//
// The files stay root's and no one else's, readable for the relay's group,
// as Debian lets daemons read private keys (the ssl-cert group). Changing
// a file named by a path through a directory the relay can write (the TLS
// directory is its own) could be steered to a file it must never see, so
// such a change is made only to a regular file with one link, reached
// through no symbolic link, and owned by root or already the relay's.
// Problems are logged, not returned: a password file the relay cannot read
// fails only the account that uses it, which says so in the status.
func Grant(full *config.Config, uid, gid int, log *slog.Logger) {
	for _, f := range relayFiles(full) {
		changed, err := grantRead(f.path, uid, gid)
		switch {
		case err != nil:
			log.Error("the relay cannot be given the file it needs", "setting", f.setting, "file", f.path, "err", err)
		case changed:
			log.Info("the relay may read a file the config names", "setting", f.setting, "file", f.path, "group", gid)
		}
	}
}

type namedFile struct{ setting, path string }

// relayFiles are the files the config names that the relay reads.
func relayFiles(full *config.Config) []namedFile {
	var out []namedFile
	add := func(setting, path string) {
		if path != "" {
			out = append(out, namedFile{setting, path})
		}
	}
	if c := full.SMTP; c != nil {
		add("smtp.tls.cert", c.TLS.Cert)
		add("smtp.tls.key", c.TLS.Key)
		add("smtp.tls.ca_file", c.TLS.CAFile)
		for i, cn := range c.Connectors {
			if cn.Auth != nil {
				add(fmt.Sprintf("smtp.connectors[%d].auth.password_file", i), cn.Auth.PasswordFile)
				oauthFiles(fmt.Sprintf("smtp.connectors[%d].auth.oauth2", i), cn.Auth.OAuth2, add)
			}
		}
		for i, k := range c.DKIMSigning {
			add(fmt.Sprintf("smtp.dkim_signing[%d].key_file", i), k.KeyFile)
		}
	}
	for i, a := range full.Fetch {
		add(fmt.Sprintf("fetch[%d].password_file", i), a.PasswordFile)
		add(fmt.Sprintf("fetch[%d].ca_file", i), a.CAFile)
		oauthFiles(fmt.Sprintf("fetch[%d].oauth2", i), a.OAuth2, add)
	}
	return out
}

// oauthFiles are the files of an account's OAuth2 settings.
func oauthFiles(p string, o *config.OAuth2, add func(setting, path string)) {
	if o == nil {
		return
	}
	add(p+".client_secret_file", o.ClientSecretFile)
	add(p+".client_certificate", o.ClientCertificate)
	add(p+".client_key", o.ClientKey)
	add(p+".refresh_token_file", o.RefreshTokenFile)
	add(p+".ca_file", o.CAFile)
}

// grantRead makes file readable for uid:gid (see Grant) and says whether
// it changed anything. A file that does not exist is left to the relay to
// report.
func grantRead(file string, uid, gid int) (bool, error) {
	if err := reachable(file, uid, gid); err != nil {
		return false, err
	}
	if st, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err == nil && st.Mode().IsRegular() && mayAccess(st, uid, gid, 0o4) {
		return false, nil // a certificate, mode 0644; through links too
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, file, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ELOOP):
		return false, errors.New("reached through a symbolic link: name the file itself")
	case errors.Is(err, unix.ENOSYS):
		return false, errors.New("not changed: needs Linux 5.6 or later (openat2)")
	case err != nil:
		return false, &fs.PathError{Op: "open", Path: file, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, &fs.PathError{Op: "stat", Path: file, Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return false, errors.New("not a regular file")
	case st.Nlink != 1:
		return false, fmt.Errorf("has %d hard links: not changed", st.Nlink)
	case st.Uid != 0 && int(st.Uid) != uid, st.Gid != 0 && int(st.Gid) != gid:
		return false, fmt.Errorf("owned by %d:%d: only root's files are changed; make it readable for uid %d or gid %d yourself", st.Uid, st.Gid, uid, gid)
	}
	if err := unix.Fchown(fd, -1, gid); err != nil {
		return false, &fs.PathError{Op: "chown", Path: file, Err: err}
	}
	if err := unix.Fchmod(fd, st.Mode&0o777|0o040); err != nil {
		return false, &fs.PathError{Op: "chmod", Path: file, Err: err}
	}
	return true, nil
}

// ownDir makes dir the relay's: created mode 0700 if missing; if it is
// someone else's (root's, left by a version that ran the relay as root),
// everything in it is chowned, then dir itself, last, so that a walk cut
// short is done again on the next start. A directory the relay already
// owns is not walked: what it holds is the relay's doing.
func ownDir(dir string, uid, gid int, log *slog.Logger) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		if err := os.Lchown(dir, uid, gid); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("smtp: %s is not a directory (%v)", dir, st.Mode().Type())
	}
	if owner(st) == [2]int{uid, gid} {
		return nil
	}
	log.Info("giving the relay its directory and what it holds (once: it was left by a version that ran the relay as root)",
		"dir", dir, "owner", fmt.Sprintf("%d:%d", owner(st)[0], owner(st)[1]), "uid", uid, "gid", gid)
	n := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		if !d.IsDir() {
			// Never a file that is also elsewhere: chowning it would hand
			// over the other name's file too.
			info, err := d.Info()
			if err != nil {
				return err
			}
			if links(info) > 1 {
				log.Warn("not given to the relay: the file has other hard links", "file", path)
				return nil
			}
		}
		n++
		return os.Lchown(path, uid, gid) // never follows a symbolic link
	})
	if err == nil {
		err = os.Lchown(dir, uid, gid)
	}
	if err != nil {
		return fmt.Errorf("smtp: give %s to uid %d: %w", dir, uid, err)
	}
	log.Info("the relay's directory is its own", "dir", dir, "entries", n)
	return nil
}

// openDir makes the launcher's own directory (the run directory; in host
// mode `gatehouse run` makes it mode 0700) searchable for the relay's
// group, unless the relay may search it already.
func openDir(dir string, uid, gid int) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if mayAccess(st, uid, gid, 0o1) {
		return nil
	}
	if o := owner(st); o[0] != 0 || (o[1] != 0 && o[1] != gid) {
		return fmt.Errorf("smtp: the relay (uid %d) cannot enter %s (mode %v, owner %d:%d)", uid, dir, st.Mode().Perm(), o[0], o[1])
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if err := os.Chmod(dir, st.Mode().Perm()|0o010); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	return nil
}

// reachable says which directory on the way to path the relay may not
// enter; it changes nothing, since those are not the launcher's.
func reachable(path string, uid, gid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	var dirs []string
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		st, err := os.Stat(dirs[i])
		if err != nil {
			return nil // missing: made later, or reported by whoever needs it
		}
		if !mayAccess(st, uid, gid, 0o1) {
			return fmt.Errorf("the relay (uid %d) cannot reach %s: %s is mode %v, owner %d:%d (it needs search permission)",
				uid, path, dirs[i], st.Mode().Perm(), owner(st)[0], owner(st)[1])
		}
	}
	return nil
}

// mayAccess says whether uid:gid, with no other groups, has the access
// bits want (4 read, 2 write, 1 search) on the file.
func mayAccess(st fs.FileInfo, uid, gid int, want fs.FileMode) bool {
	m, o := st.Mode().Perm(), owner(st)
	switch {
	case o[0] == uid:
		return m>>6&want == want
	case o[1] == gid:
		return m>>3&want == want
	}
	return m&want == want
}

func owner(st fs.FileInfo) [2]int {
	s := st.Sys().(*syscall.Stat_t)
	return [2]int{int(s.Uid), int(s.Gid)}
}

func links(st fs.FileInfo) uint64 { return uint64(st.Sys().(*syscall.Stat_t).Nlink) }

// readConfigured reads a file the config names. When the relay may not,
// the error says why: it reads as its own user what the launcher let it.
func readConfigured(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w (the relay runs as uid %d: it reads the files its config names once PID 1 lets it, at start and on reload; see PID 1's log)", err, os.Geteuid())
	}
	return b, err
}
