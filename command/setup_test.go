package command

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/adminauth"
	"gatehouse/config"
	"gatehouse/setup"
)

func (f *fake) Apply(file string, within time.Duration) error {
	f.calls = append(f.calls, "apply "+filepath.Base(file)+" "+within.String())
	return nil
}

func (f *fake) Confirm() error { f.calls = append(f.calls, "confirm"); return nil }
func (f *fake) Update(file string, downgrade bool) error {
	f.calls = append(f.calls, fmt.Sprintf("update %s %v", file, downgrade))
	return nil
}

const answersYAML = `hostname: gw1
dhcp: true
domains: [example.com]
internal_server: 10.0.0.5
trusted_networks: [10.0.0.0/8]
admin_allow: [192.0.2.0/24]
web_password: a-long-password
`

func writeAnswers(t *testing.T, text string) string {
	file := filepath.Join(t.TempDir(), "answers.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// Scripted: the answers from a file, applied, the paths printed, kept
// with --yes, the password set.
func TestSetupAnswersYes(t *testing.T) {
	e, f, out := env(t)
	Exec(e, "setup --answers "+writeAnswers(t, answersYAML)+" --yes")
	if got := strings.Join(f.calls, ", "); got != "apply "+SetupFile+" 2m0s, confirm" {
		t.Errorf("calls: %s\n%s", got, out)
	}
	cfg, _, err := config.Load(filepath.Join(e.Paths.Data(), SetupFile))
	if err != nil || cfg.Hostname != "gw1" || cfg.SMTP == nil {
		t.Errorf("candidate: %v %+v", err, cfg)
	}
	for _, want := range []string{"config applied; it is rolled back unless kept within 2m0s", "SMTP", "10.0.0.5", "config kept", "web password set"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, ok := adminauth.NewStore(e.Paths.Admin()).Password("admin", "a-long-password"); !ok {
		t.Error("the web password was not set")
	}
}

// At a console: the questions, then "no" to keeping it: no confirm, no
// password.
func TestSetupAskedNotKept(t *testing.T) {
	e, f, out := env(t)
	e.ReadLine = setup.Lines(strings.NewReader(strings.Join([]string{
		"gw2", "", "", "", "", "example.com", "10.0.0.5", "", "192.0.2.0/24", "-", "a-long-password", "a-long-password",
		"n",
	}, "\n") + "\n"))
	Exec(e, "setup --confirm-within 30s")
	if got := strings.Join(f.calls, ", "); got != "apply "+SetupFile+" 30s" {
		t.Errorf("calls: %s\n%s", got, out)
	}
	for _, want := range []string{"Keep this config? [y/N] ", "not kept", "the web password was not set"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if adminauth.NewStore(e.Paths.Admin()).HasPassword() {
		t.Error("a password was set for a config not kept")
	}
}

func TestSetupRefusals(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"setup", "nobody here to answer"},
		{"setup extra", "usage: setup [--answers FILE]"},
		{"setup --answers " + writeAnswers(t, "hostname: gw1\ndhcpp: true\n"), `unknown field "dhcpp"`},
		{"setup --answers " + writeAnswers(t, "hostname: gw1\n"), "address: give the interface's address"},
	} {
		e, f, out := env(t)
		Exec(e, tc.line)
		if !strings.Contains(out.String(), tc.want) || len(f.calls) > 0 {
			t.Errorf("%s: calls %v, output:\n%s\nwant %q", tc.line, f.calls, out, tc.want)
		}
	}
}
