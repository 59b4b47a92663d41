package service

import (
	"errors"
	"os"
	"strconv"
)

// EnvGateFD names the variable that gives a gated service the file
// descriptor of its gate (see supervisor.Service.Gated).
const EnvGateFD = "GATE_FD"

// ErrNotReleased says the supervisor closed the gate without letting the
// service through: it is stopping, and the service should exit quietly.
var ErrNotReleased = errors.New("service: stopped at its gate")

// AwaitGate returns once the supervisor lets the service through its gate:
// the service was started early, before what it needs was there, and may do
// nothing until then. Without a gate it returns at once.
func AwaitGate() error {
	v := os.Getenv(EnvGateFD)
	if v == "" {
		return nil
	}
	os.Unsetenv(EnvGateFD) // not for the service's own children
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return errors.New("service: bad " + EnvGateFD + "=" + v)
	}
	f := os.NewFile(uintptr(fd), "gate")
	defer f.Close()
	var b [1]byte
	if n, _ := f.Read(b[:]); n != 1 {
		return ErrNotReleased
	}
	return nil
}
