package paths

import (
	"bytes"
	"testing"

	"gatehouse/config"
	"gatehouse/test/golden"
)

// The table for the documented example, in every format, against golden
// files reviewed in diffs (go test ./paths -update rewrites them).
func TestGoldenTables(t *testing.T) {
	c, _, err := config.Load("../config/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	table := Table(c)
	for _, f := range Formats {
		var b bytes.Buffer
		if err := Write(&b, table, f); err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "example."+f, b.String())
	}
}

func TestDerivedFromServices(t *testing.T) {
	c, _, err := config.Parse("x.yaml", []byte("interfaces: [{name: eth0, dhcp: true}]\nntp: {servers: [\"10.0.0.1:11123\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var fns []string
	for _, p := range Table(c) {
		fns = append(fns, p.Function+" "+p.Port()+" "+p.Target())
	}
	want := []string{"Address configuration (DHCP) UDP 67 DHCP server", "Name resolution UDP 53 Name server (DHCP-provided)",
		"Name resolution TCP 53 Name server (DHCP-provided)", "Time synchronisation UDP 123 10.0.0.1"}
	if len(fns) != len(want) {
		t.Fatalf("table %q", fns)
	}
	for i := range want {
		if fns[i] != want[i] {
			t.Errorf("row %d: %q, want %q", i, fns[i], want[i])
		}
	}
}
