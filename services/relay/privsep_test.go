package relay

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/config"
	"gatehouse/test/asuser"
)

func mustWrite(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func ownerMode(t *testing.T, path string) (string, fs.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	o := owner(st)
	return fmt.Sprintf("%d:%d", o[0], o[1]), st.Mode().Perm()
}

// Before the relay starts as its own user, the launcher gives it its
// directories (an old root-owned queue with all it holds, once), lets it
// enter the run directory and read its config and the files the config
// names, and never anything reached through a link or owned by someone
// else.
func TestPrepareGivesTheRelayWhatItNeeds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: changes owners")
	}
	base := asuser.Dir(t)
	run := filepath.Join(base, "run")
	if err := os.Mkdir(run, 0o700); err != nil { // as `gatehouse run` makes it
		t.Fatal(err)
	}
	p := PathsFor(run, false)
	// A queue left by a version that ran the relay as root.
	mustWrite(t, filepath.Join(p.Queue, "msg", "A1"), 0o600)
	mustWrite(t, filepath.Join(base, "elsewhere"), 0o600)
	if err := os.Link(filepath.Join(base, "elsewhere"), filepath.Join(p.Queue, "tmp-linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(p.Queue, "msg", "symlink")); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(run, "config.yaml")
	mustWrite(t, cfgFile, 0o600)
	secrets := filepath.Join(base, "secrets")
	for name, mode := range map[string]fs.FileMode{"key": 0o600, "ca.pem": 0o644, "pw": 0o600, "target": 0o600, "hard": 0o600, "staff": 0o640} {
		mustWrite(t, filepath.Join(secrets, name), mode)
	}
	os.Chmod(secrets, 0o755)
	os.Symlink(filepath.Join(secrets, "target"), filepath.Join(secrets, "symlinked"))
	os.Link(filepath.Join(secrets, "hard"), filepath.Join(base, "hard-elsewhere"))
	os.Chown(filepath.Join(secrets, "staff"), 0, 50)
	full := &config.Config{
		SMTP: &config.SMTP{TLS: config.SMTPFiles{Key: filepath.Join(secrets, "key"), CAFile: filepath.Join(secrets, "ca.pem")},
			Connectors: []config.Connector{{Name: "m365", Auth: &config.SMTPAuth{PasswordFile: filepath.Join(secrets, "pw")}}}},
		Fetch: []config.FetchAccount{
			{PasswordFile: filepath.Join(secrets, "symlinked")},
			{PasswordFile: filepath.Join(secrets, "hard")},
			{PasswordFile: filepath.Join(secrets, "staff")},
			{PasswordFile: filepath.Join(secrets, "missing")},
		},
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := Prepare(p, full, cfgFile, RelayUID, RelayGID, log); err != nil {
		t.Fatal(err)
	}

	relay, root := "100:100", "0:0"
	for _, c := range []struct {
		path  string
		owner string
		mode  fs.FileMode
	}{
		{run, "0:100", 0o710},
		{p.Queue, relay, 0o700},
		{p.MTASTS, relay, 0o700},
		{p.TLSRPT, relay, 0o700},
		{filepath.Join(p.Queue, "msg"), relay, 0o700},
		{filepath.Join(p.Queue, "msg", "A1"), relay, 0o600},
		{filepath.Join(base, "elsewhere"), root, 0o600}, // neither through the hard link nor the symbolic one
		{p.TLS, relay, 0o700},
		{filepath.Dir(p.Socket), relay, 0o700},
		{cfgFile, "0:100", 0o640},
		{filepath.Join(secrets, "key"), "0:100", 0o640},
		{filepath.Join(secrets, "pw"), "0:100", 0o640},
		{filepath.Join(secrets, "ca.pem"), root, 0o644},  // readable already
		{filepath.Join(secrets, "target"), root, 0o600},  // named through a symbolic link
		{filepath.Join(secrets, "hard"), root, 0o600},    // has another name
		{filepath.Join(secrets, "staff"), "0:50", 0o640}, // another group's
	} {
		if owner, mode := ownerMode(t, c.path); owner != c.owner || mode != c.mode {
			t.Errorf("%s: %s %v, want %s %v", c.path, owner, mode, c.owner, c.mode)
		}
	}
	for _, want := range []string{"symbolic link", "2 hard links", "owned by 0:50", "not given to the relay: the file has other hard links"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}

	// Once the directory is the relay's, what is in it is the relay's
	// doing and is not walked again (a link it made to a root file there
	// must not be chowned).
	mustWrite(t, filepath.Join(p.Queue, "msg", "planted"), 0o600)
	logs.Reset()
	if err := Prepare(p, full, cfgFile, RelayUID, RelayGID, log); err != nil {
		t.Fatal(err)
	}
	if owner, _ := ownerMode(t, filepath.Join(p.Queue, "msg", "planted")); owner != root {
		t.Errorf("a root file in the relay's own queue was chowned to %s", owner)
	}
	if strings.Contains(logs.String(), "the relay may read") || strings.Contains(logs.String(), "giving the relay") {
		t.Errorf("a second Prepare changed something:\n%s", logs.String())
	}
}

// A run directory the relay cannot reach, under another user's mode 0700
// directory, is an error that names the directory, not a relay that fails
// later.
func TestPrepareSaysWhatTheRelayCannotReach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: changes owners")
	}
	closed := filepath.Join(asuser.Dir(t), "closed")
	os.Mkdir(closed, 0o700)
	run := filepath.Join(closed, "run")
	os.Mkdir(run, 0o755)
	err := Prepare(PathsFor(run, false), &config.Config{SMTP: &config.SMTP{}}, filepath.Join(run, "config.yaml"), RelayUID, RelayGID, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), closed+" is mode -rwx------") {
		t.Errorf("err = %v; want one naming %s", err, closed)
	}
}
