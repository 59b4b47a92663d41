package pid1

import (
	"errors"
	"strings"
	"testing"
)

func TestBootFallsToEmergencyOnPanicOrError(t *testing.T) {
	var halted []string
	halt := func(a string) { halted = append(halted, a) }

	if r := boot(func() (string, error) { panic("boom") }, halt); r != "panic: boom" {
		t.Errorf("panic: reason %q", r)
	}
	if r := boot(func() (string, error) { return "", errors.New("no supervisor") }, halt); r != "no supervisor" {
		t.Errorf("error: reason %q", r)
	}
	if len(halted) != 0 {
		t.Errorf("halted after a failed boot: %v", halted)
	}
	// A halt that returns (reboot(2) failed) must not return quietly either.
	if r := boot(func() (string, error) { return "poweroff", nil }, halt); !strings.Contains(r, "poweroff did not happen") {
		t.Errorf("failed halt: reason %q", r)
	}
	if len(halted) != 1 || halted[0] != "poweroff" {
		t.Errorf("halted %v, want [poweroff]", halted)
	}
}
