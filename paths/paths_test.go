package paths

import (
	"bytes"
	"strings"
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

// A frontend in the DMZ needs the cluster port open inward from the
// backends; outward only for its join.
func TestClusterPaths(t *testing.T) {
	for _, tc := range []struct {
		role    string
		wantOut bool
	}{{"backend", true}, {"frontend", false}} {
		c, _, err := config.Parse("x.yaml", []byte("ntp: {servers: [10.0.0.1]}\nssh: {allow: [192.0.2.7]}\ncluster: {role: "+tc.role+", address: \"10.0.0.5:9446\", peers: [10.0.0.0/28]}\n"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range Table(c) {
			if p.Origin == "cluster" || p.Origin == "ntp" {
				got = append(got, p.Function+" "+p.Direction+" "+p.Port()+" "+p.Source()+" "+p.Target()+" "+requiredText(p.Required))
			}
		}
		want := []string{"Time synchronisation out UDP 123 Appliance 10.0.0.1 required",
			"Cluster communication in TCP 9446 10.0.0.0/28 Appliance required",
			"Cluster communication out TCP 9446 Appliance 10.0.0.0/28 " + requiredText(tc.wantOut)}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", tc.role, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// The other nodes may always reach the diagnostics shell.
		if s := c.SSHPeers().String(); s != "192.0.2.7, 10.0.0.0/28" {
			t.Errorf("ssh peers: %s", s)
		}
	}
}

func requiredText(r bool) string {
	if r {
		return "required"
	}
	return "optional"
}
