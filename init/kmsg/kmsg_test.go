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
