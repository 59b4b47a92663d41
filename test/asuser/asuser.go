// Package asuser lets a test talk to a Unix socket as another user: the
// test binary itself, copied where that user may run it, is started again
// with other credentials and connects. The appliance's sockets check who
// connects (SO_PEERCRED), and only a second process can be someone else.
package asuser

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const (
	envSocket  = "GATEHOUSE_ASUSER_SOCKET"
	envRequest = "GATEHOUSE_ASUSER_REQUEST"
)

// Main, called first in a test binary's TestMain, makes this process the
// client that Dial started: it connects, sends the request, prints the
// answer and exits. In any other process it returns at once.
func Main() {
	sock := os.Getenv(envSocket)
	if sock == "" {
		return
	}
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		os.Exit(1)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The server may refuse before reading: a failed write still leaves
	// its answer to read.
	io.WriteString(c, os.Getenv(envRequest))
	b, err := io.ReadAll(c)
	os.Stdout.Write(b)
	// A server that closes without reading the request resets the
	// connection after its answer.
	if err != nil && len(b) == 0 {
		fmt.Printf("\nread: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Dial sends request to the Unix socket sock from a process running as
// uid:gid with no supplementary groups and no capabilities, and returns
// what the socket answered. It needs root; without it the test is skipped.
func Dial(t testing.TB, uid, gid uint32, sock, request string) (string, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts a client as another user")
	}
	cmd := exec.Command(Executable(t))
	cmd.Env = append(os.Environ(), envSocket+"="+sock, envRequest+"="+request)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("client as uid %d: %w: %s", uid, err, out)
	}
	return string(out), nil
}

// Executable copies the test binary out of the build cache (mode 0700
// directories) into a directory anyone may enter, so that another user can
// run it, and returns the copy's path.
func Executable(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := Dir(t)
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(dir, filepath.Base(self))
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}

// Dir returns a new directory that every user may enter, removed when the
// test ends: t.TempDir's parent is mode 0700.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "asuser")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
