package sshd

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

// A key file that does not parse (truncated by a crash, say) is replaced
// by a new key, with an error in the log that names the new fingerprint:
// the shell comes up with a changed host key rather than never again.
func TestHostKeyCorruptIsReplaced(t *testing.T) {
	for name, content := range map[string]string{
		"truncated": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
		"empty":     "",
		"garbage":   "\x00\x01\x02 not a key",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, hostKeyFile)
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logged bytes.Buffer
			signer, err := hostKey(dir, slog.New(slog.NewTextHandler(&logged, nil)))
			if err != nil {
				t.Fatalf("host key: %v", err)
			}
			fp := ssh.FingerprintSHA256(signer.PublicKey())
			if !strings.Contains(logged.String(), "level=ERROR") || !strings.Contains(logged.String(), fp) {
				t.Errorf("no error naming the new key's fingerprint %s in the log:\n%s", fp, logged.String())
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			saved, err := ssh.ParsePrivateKey(b)
			if err != nil {
				t.Fatalf("the new key was not saved: %v", err)
			}
			if ssh.FingerprintSHA256(saved.PublicKey()) != fp {
				t.Error("the saved key is not the one in use")
			}
			again, err := hostKey(dir, slog.New(slog.NewTextHandler(&logged, nil)))
			if err != nil || ssh.FingerprintSHA256(again.PublicKey()) != fp {
				t.Errorf("the next start does not keep the new key: %v", err)
			}
		})
	}
}

// A write cut short (here by the file size limit, as by a crash or a full
// disk) leaves no partial key file behind, and no temporary file.
func TestHostKeyWriteIsAtomic(t *testing.T) {
	dir := t.TempDir()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// Process-wide, so only for the one call (the test is not parallel);
	// Go ignores SIGXFSZ, so the write fails with EFBIG.
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 64, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	_, err := hostKey(dir, slog.New(slog.NewTextHandler(&logged, nil)))
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err != nil || !strings.Contains(logged.String(), "ssh host key not saved") {
		t.Errorf("a key that cannot be saved should still serve, with an error in the log: %v\n%s", err, logged.String())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind after a failed write: %s", e.Name())
	}
	first, err := hostKey(dir, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	second, err := hostKey(dir, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.PublicKey().Marshal(), second.PublicKey().Marshal()) {
		t.Error("the key made at the first good start was not kept")
	}
}
