package cluster

import (
	"strings"
	"testing"
)

func TestSharedPartAndMergeKeepTheNodesOwnSections(t *testing.T) {
	b1 := "# gateway b1\nhostname: b1\ninterfaces:\n  - name: eth0\n    addresses: [10.0.0.1/24]\ncluster:\n  role: backend\n  address: 10.0.0.1\n" +
		"ntp:\n  servers: [10.0.0.254]\n# the relay\nsmtp:\n  listen: [\":25\"]\n  text: |\n    a: block\n    scalar\n"
	f1 := "hostname: f1\ncluster: {role: frontend, address: 10.0.0.9}\nntp: {servers: [1.2.3.4]}\n"
	shared, err := SharedPart([]byte(b1))
	if err != nil {
		t.Fatal(err)
	}
	want := "ntp:\n  servers: [10.0.0.254]\n# the relay\nsmtp:\n  listen: [\":25\"]\n  text: |\n    a: block\n    scalar\n"
	if string(shared) != want {
		t.Fatalf("shared part:\n%s\nwant:\n%s", shared, want)
	}
	merged, err := Merge(shared, []byte(f1))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(merged), "hostname: f1\ncluster: {role: frontend, address: 10.0.0.9}\nntp:\n  servers: [10.0.0.254]") {
		t.Fatalf("merged:\n%s", merged)
	}
	// What a node runs has the same shared part, byte for byte: the hash
	// is equal on every node.
	again, err := SharedPart(merged)
	if err != nil {
		t.Fatal(err)
	}
	if hashOf(again) != hashOf(shared) {
		t.Fatalf("shared part changed through a merge:\n%s\nvs\n%s", again, shared)
	}
	// A cluster node's own sections never come from the cluster.
	if strings.Contains(string(merged), "b1") || strings.Contains(string(merged), "eth0") {
		t.Fatalf("b1's own sections reached f1:\n%s", merged)
	}
}

func TestSplitRefusesWhatItCannotCut(t *testing.T) {
	for _, doc := range []string{"{hostname: a, ntp: {servers: [x]}}\n", "hostname: a\n  bad: indent\n:x\n"} {
		if _, err := SharedPart([]byte(doc)); err == nil {
			t.Errorf("%q: no error", doc)
		}
	}
}

func TestSecretPaths(t *testing.T) {
	doc := "smtp:\n  smarthosts:\n    - {host: a, auth: {user: u, password_file: /data/secrets/a}, ca_file: /data/ca.pem}\nfetch:\n  - {password_file: relative/no}\n"
	got := SecretPaths([]byte(doc))
	if strings.Join(got, ",") != "/data/ca.pem,/data/secrets/a" {
		t.Fatalf("got %v", got)
	}
}
