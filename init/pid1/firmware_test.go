package pid1

import (
	"strings"
	"testing"
	"time"

	"gatehouse/control"
)

func TestSlotOf(t *testing.T) {
	for cmdline, want := range map[string]string{
		`initrd=\a\initramfs.cpio.gz console=ttyS0 panic=5 quiet gatehouse.slot=a`: "a",
		"console=ttyS0 gatehouse.slot=b\n":                                         "b",
		"console=ttyS0 gatehouse.slot=c":                                           "",
		"console=ttyS0 xgatehouse.slot=a":                                          "",
		"":                                                                         "",
	} {
		if got := slotOf(cmdline); got != want {
			t.Errorf("slotOf(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

// The old firmware says why the new one did not stay, from how far the
// record got.
func TestFailureReason(t *testing.T) {
	booted := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	for phase, want := range map[string]string{
		"pending":         "interrupted while the new firmware was being written",
		"armed":           "never reached its data disk",
		"trial":           "booted at 2026-12-01T03:00:00Z but stopped before its trial ended",
		"failed-in-trial": "not ready within 30s",
	} {
		st := &updateState{Phase: phase, Booted: booted, Reason: "not ready within 30s"}
		if got := failureReason(st); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want it to say %q", phase, got, want)
		}
	}
	r := control.UpdateReport{Version: "v2", Slot: "b", Phase: "failed", Reason: "it hung"}
	if got := r.String(); got != "update to v2 failed: it hung" {
		t.Errorf("report %q", got)
	}
}
