package kmsg

import "testing"

func TestFormat(t *testing.T) {
	for in, want := range map[string]string{
		"6,339,5140900,-;Linux version 6.1.0\n": "[    5.140900] Linux version 6.1.0",
		"4,1,0,-;x\n":                           "[    0.000000] x",
		" SUBSYSTEM=acpi\n":                     "",
		"garbage\n":                             "",
	} {
		got, ok := format(in)
		if got != want || ok != (want != "") {
			t.Errorf("format(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestParseSeverity(t *testing.T) {
	_, r, ok := parse("11,2,30,-;usb 1-1: device descriptor read error\n") // facility 1, severity 3
	if !ok || r.Service != "kernel" || r.Line != "usb 1-1: device descriptor read error" || r.Severity == nil || *r.Severity != 3 {
		t.Fatalf("parse: %+v %v", r, ok)
	}
}
