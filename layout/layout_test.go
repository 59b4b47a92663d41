package layout

import "testing"

// The paths are a contract with what is already on disks and in scripts:
// the table pins every one.
func TestPaths(t *testing.T) {
	app, host := Appliance(), Host("/var/lib/gh")
	for _, tc := range []struct{ got, want string }{
		{app.ControlSocket(), "/run/gatehouse/control.sock"},
		{app.RelaySocket(), "/run/gatehouse/smtp/smtp.sock"},
		{app.FirewallSocket(), "/run/gatehouse/firewall/firewall.sock"},
		{app.Config(), "/run/gatehouse/config.yaml"},
		{app.ResolvConf(), "/etc/resolv.conf"},
		{app.Queue(), "/data/queue"},
		{app.TLS(), "/data/tls"},
		{app.SSHKeys(), "/data/ssh"},
		{app.DKIM(), "/data/dkim"},
		{app.MTASTS(), "/data/mta-sts"},
		{app.TLSRPT(), "/data/tls-rpt"},
		{app.OAuth(), "/data/oauth"},
		{host.ControlSocket(), "/var/lib/gh/control.sock"},
		{host.RelaySocket(), "/var/lib/gh/smtp/smtp.sock"},
		{host.FirewallSocket(), "/var/lib/gh/firewall/firewall.sock"},
		{host.Config(), "/var/lib/gh/config.yaml"},
		{host.ResolvConf(), "/var/lib/gh/resolv.conf"},
		{host.Queue(), "/var/lib/gh/queue"},
		{host.TLS(), "/var/lib/gh/tls"},
		{host.SSHKeys(), "/var/lib/gh/ssh"},
		{host.DKIM(), "/var/lib/gh/dkim"},
		{host.MTASTS(), "/var/lib/gh/mta-sts"},
		{host.TLSRPT(), "/var/lib/gh/tls-rpt"},
		{host.OAuth(), "/var/lib/gh/oauth"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s, want %s", tc.got, tc.want)
		}
	}
	if For("/run/gatehouse", true) != app || For("/var/lib/gh", false) != host {
		t.Errorf("For: %+v %+v", For("/run/gatehouse", true), For("/var/lib/gh", false))
	}
	if OfControlSocket(app.ControlSocket()) != app || OfControlSocket(host.ControlSocket()) != host {
		t.Errorf("OfControlSocket: %+v %+v", OfControlSocket(app.ControlSocket()), OfControlSocket(host.ControlSocket()))
	}
}
