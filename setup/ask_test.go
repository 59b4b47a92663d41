package setup

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"gatehouse/test/golden"
)

func script(lines ...string) ReadLine {
	return Lines(strings.NewReader(strings.Join(lines, "\n") + "\n"))
}

// echo writes each line read to out, as a terminal shows what is typed.
func echo(next ReadLine, out io.Writer) ReadLine {
	return func() (string, error) {
		s, err := next()
		if err == nil {
			io.WriteString(out, s+"\n")
		}
		return s, err
	}
}

// A whole session at the console: every kind of wrong answer is refused
// with its reason and asked again; the transcript is a golden file.
func TestAskTranscript(t *testing.T) {
	var out strings.Builder
	a, err := Ask(echo(script(
		"gw_1", "gw1.example.com", // bad host name
		"", // eth0
		"maybe", "no",
		"192.0.2.10", "192.0.2.300/24", "192.0.2.10/24", // no prefix length, bad address
		"198.51.100.1", "192.0.2.1", // gateway outside the network
		"", "dns.example.com", "192.0.2.53, 192.0.2.54", // needed; names are not servers
		"", // the pool
		"example.com bad_domain", "example.com,example.org",
		"", "mail.internal:99999", "mail.internal:2525", // needed; port out of range
		"",                                            // the internal server
		"192.0.2.0/24, 192.168.1.1-x", "192.0.2.0/24", // bad range
		"ssh-ed25519 AAAA", testKey, // bad key
		"short", "a-long-password", "another-password", "a-long-password", "a-long-password",
	), &out), &out, Defaults())
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want := Answers{
		Hostname: "gw1.example.com", Interface: "eth0", Address: "192.0.2.10/24", Gateway: "192.0.2.1",
		DNS: []string{"192.0.2.53", "192.0.2.54"}, NTP: PoolNTP,
		Domains: []string{"example.com", "example.org"}, InternalServer: "mail.internal:2525",
		TrustedNetworks: []string{"mail.internal"}, AdminAllow: []string{"192.0.2.0/24"},
		SSHKey: testKey, WebPassword: "a-long-password",
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("answers\n%+v\nwant\n%+v", a, want)
	}
	golden.Check(t, "ask.golden", out.String())
}

// Enter takes every default: DHCP, the pool, no relay, nobody remote.
func TestAskDefaults(t *testing.T) {
	var out strings.Builder
	a, err := Ask(script("", "", "", "", "", "", ""), &out, Defaults())
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(a, Defaults()) {
		t.Errorf("got %+v, want the defaults", a)
	}
	if _, err := Render(a); err != nil {
		t.Error(err)
	}
}

// Input that ends before the answers do is an error naming the question.
func TestAskInputEnds(t *testing.T) {
	_, err := Ask(script("gw1"), io.Discard, Defaults())
	if err == nil || !strings.Contains(err.Error(), `"Network interface"`) {
		t.Errorf("got %v", err)
	}
}
