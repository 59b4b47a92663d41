//go:build e2e

package test

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/image/qemu"
)

// The first-boot setup at the serial console of a fresh appliance (no
// config on its data disk, so the built-in default: DHCP, no relay): the
// operator types setup, answers, one answer wrong, sees the config applied
// and the path table, keeps it, and finds the relay running.
func TestBootFirstSetup(t *testing.T) {
	img := dataDisk(t, nil)
	v := boot(t, qemu.Options{Data: img, Nics: []string{"user"}})
	waitReady(t, v)
	start := time.Now()
	command(t, v, "")
	expect(t, v, `gatehouse> `)
	command(t, v, "status")
	expect(t, v, `config:   /etc/gatehouse/gatehouse.yaml`) // the image's default
	expect(t, v, `gatehouse> `)

	command(t, v, "setup")
	for _, qa := range []struct{ prompt, answer string }{
		{`Host name \[gatehouse\]: `, "gw_setup"},
		{`"gw_setup" is not a valid host name .*; again, please\s+Host name \[gatehouse\]: `, "gw-setup"},
		{`Network interface \[eth0\]: `, ""},
		{`Address by DHCP\? \(yes/no\) \[yes\]: `, ""},
		{`DNS servers \(addresses, comma-separated\) \[from DHCP\]: `, ""},
		// The pool is offered, but this world has no internet: an address instead.
		{`NTP servers .* \[0\.pool\.ntp\.org, 1\.pool\.ntp\.org, 2\.pool\.ntp\.org, 3\.pool\.ntp\.org\]: `, "10.0.2.2"},
		{`Managed mail domains .*: `, "example.com"},
		{`Internal mail server .*: `, "10.0.2.2:2525"},
		{`Trusted networks, .* \[10\.0\.2\.2\]: `, ""},
		{`Administration .* allowed from .*: `, "10.0.2.2"},
		{`SSH public key, .*: `, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILNx1j5XjRSQhvizLtd/NlOFArTxkVMdLx2wVLOJLwn admin@example.com"},
		{`Web console password for the user admin .*: `, "a-long-password"},
		{`The same password again: `, "a-long-password"},
	} {
		expect(t, v, qa.prompt)
		command(t, v, qa.answer)
	}
	expect(t, v, `config written to /data/gatehouse\.setup\.yaml`)
	expect(t, v, `config applied; it is rolled back unless kept within 2m0s`)
	// The services' log lines may cut into the table's: match short pieces.
	expect(t, v, `Function\s+Port\s+Source`)
	expect(t, v, `Inbound mail \(SMTP\)\s+TCP 25\s+any`)
	expect(t, v, `Delivery to the internal mail server\s+TCP 2525\s+Appliance\s+10\.0\.2\.2`)
	expect(t, v, `Keep this config\? \[y/N\] `)
	command(t, v, "y")
	expect(t, v, `config kept`)
	expect(t, v, `web password set for the user admin`)
	expect(t, v, `gatehouse> `)

	// The relay runs under the new config once it has started. Log
	// lines may cut into the status: ask again until it reads whole.
	want := []*regexp.Regexp{
		regexp.MustCompile(`on gw-setup \(pid1\)`),
		regexp.MustCompile(`config:   /data/gatehouse\.yaml\r?\n`),
		regexp.MustCompile(`smtp\s+running\s+\d+`),
	}
	for i := 0; ; i++ {
		command(t, v, "status")
		out := expect(t, v, `(?s)gatehouse \S+ on .*?conditions:`)[0]
		ok := true
		for _, re := range want {
			ok = ok && re.MatchString(out)
		}
		if ok {
			break
		}
		if i == 20 {
			t.Fatalf("status after setup lacks one of %v:\n%s", want, out)
		}
		time.Sleep(time.Second)
	}
	t.Logf("setup at the console to relay running: %v", time.Since(start).Round(time.Millisecond))

	command(t, v, "poweroff")
	expect(t, v, `reboot: Power down`)
	if err := v.Wait(stepTimeout); err != nil {
		t.Fatalf("QEMU did not exit by itself after poweroff: %v", err)
	}
	// On the data disk: the config kept, and the password's bcrypt hash.
	for file, want := range map[string]string{"/gatehouse.yaml": "\nhostname: gw-setup\n", "/admin/passwd": "$2a$10$"} {
		out, err := exec.Command("debugfs", "-R", "cat "+file, img).Output()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s on the data disk: %v, lacks %q:\n%s", file, err, want, out)
		}
	}
}
