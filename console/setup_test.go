package console

import (
	"context"
	"strings"
	"testing"

	"gatehouse/control"
	"gatehouse/layout"
	"gatehouse/test/fakeinstance"
)

// A command that asks reads the lines typed after it; the shell's prompt
// comes back when it is done.
func TestShellHandsLinesToSetup(t *testing.T) {
	in := fakeinstance.Start(t, false)
	typed := strings.Join([]string{"setup",
		"gw1", "", "", "", "", "example.com", "10.0.0.5", "", "-", // hostname ... admin: nobody
		"y", // keep
		"status",
	}, "\n") + "\n"
	var out strings.Builder
	sh := &Shell{Backend: control.Client{Socket: in.Control}, In: strings.NewReader(typed), Out: &out, Paths: layout.Host(in.Dir)}
	if err := sh.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"Host name [gatehouse]: ", "Keep this config? [y/N] config kept\n" + Prompt, "up 1h2m5s"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
