package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/test/fakeinstance"
)

// `gatehouse setup --answers FILE --yes` asks nothing: it applies and
// confirms through the control socket; a bad answers file is exit 2.
func TestSetupCLI(t *testing.T) {
	in := fakeinstance.Start(t, false)
	answers := filepath.Join(t.TempDir(), "answers.yaml")
	os.WriteFile(answers, []byte("hostname: gw1\ndhcp: true\ndomains: [example.com]\ninternal_server: 10.0.0.5\n"), 0o600)
	code, out, errOut := call("setup", "--answers", answers, "--yes", "--state", in.Dir)
	if code != 0 || !strings.Contains(out, "config kept") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var verbs []string
	for len(in.Requests) > 0 {
		r := <-in.Requests
		for _, v := range []string{"apply", "confirm"} {
			if strings.Contains(r, `"verb":"`+v+`"`) {
				verbs = append(verbs, v)
			}
		}
	}
	if strings.Join(verbs, " ") != "apply confirm" {
		t.Errorf("requests: %v", verbs)
	}
	os.WriteFile(answers, []byte("hostname: gw_1\ndhcp: true\n"), 0o600)
	if code, _, errOut := call("setup", "--answers", answers, "--state", in.Dir); code != 2 || !strings.Contains(errOut, "not a valid host name") {
		t.Errorf("bad answers: exit %d, %s", code, errOut)
	}
}
