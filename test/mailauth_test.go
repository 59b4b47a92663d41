//go:build e2e

package test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/dkimsign"
	"gatehouse/test/bench"
)

// dkimpySign is a signer that is not ours: dkimpy. It reads a message on
// stdin and writes it back with one DKIM-Signature per entry of DKIM_SIGN
// ("selector:algorithm:keyfile", space-separated) for DKIM_DOMAIN, each
// over the original message, relaxed/relaxed.
const dkimpySign = `
import os, sys
import dkim
msg = sys.stdin.buffer.read()
sigs = b""
for spec in os.environ["DKIM_SIGN"].split():
    sel, algo, keyfile = spec.split(":")
    key = open(keyfile, "rb").read()
    sigs += dkim.sign(msg, sel.encode(), os.environ["DKIM_DOMAIN"].encode(), key,
                      signature_algorithm=algo.encode(), canonicalize=(b"relaxed", b"relaxed"))
sys.stdout.buffer.write(sigs + msg)
`

// The client addresses in the "internet" namespace, each with its part in
// the DNS data below.
const (
	spfGood  = "10.77.0.30"  // the one address every SPF record here allows
	spfBad   = "10.77.0.31"  // allowed by none
	dnsAddr  = "10.77.53.53" // the test's dnsmasq
	listed   = "10.77.0.66"  // in bl.test (127.0.0.2)
	errored  = "10.77.0.67"  // err.test answers 127.255.255.254 for it: an error, not a listing
	authHost = "mx.example.test"
)

// TestMailAuth checks mail from outside against real DNS data (dnsmasq)
// and real signers and verifiers (dkimpy): SPF, DKIM, DMARC, DNSBL and
// the Authentication-Results header; and mail from the inside signed by
// Gatehouse, verified by dkimpy.
func TestMailAuth(t *testing.T) {
	w := newMailWorld(t)
	for _, a := range []string{spfGood, spfBad, listed, errored} {
		ipIn(t, w.router, "addr", "add", a+"/24", "dev", "r0")
	}
	// The test's DNS server has an interface of its own: the mail world's
	// dnsmasq takes every address on r0 and lo, even those added later.
	run(t, "ip", "link", "add", "dns0", "netns", w.router, "type", "veth", "peer", "name", "dns1", "netns", w.router)
	ipIn(t, w.router, "addr", "add", dnsAddr+"/32", "dev", "dns0")
	ipIn(t, w.router, "link", "set", "dns0", "up")
	ipIn(t, w.router, "link", "set", "dns1", "up")
	ipIn(t, w.appl, "route", "add", dnsAddr+"/32", "via", "10.77.0.1")
	intlSink := w.sink(t, w.intl, "10.88.0.1:25")
	partnerSink := w.sink(t, w.router, "10.77.0.25:25")

	// The outside senders' keys, for dkimpy: RSA-2048 (PKCS#1 PEM) and
	// Ed25519 (RFC 8463: the base64 seed).
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaFile := filepath.Join(w.dir, "sender-rsa.pem")
	os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), 0o600)
	spki, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaRecord := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(spki)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edFile := filepath.Join(w.dir, "sender-ed25519.key")
	os.WriteFile(edFile, []byte(base64.StdEncoding.EncodeToString(edKey.Seed())), 0o600)
	edRecord := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub)

	// Our keys, made as an operator makes them; the directory must let the
	// relay's user through (keygen would make it 0700).
	keyDir := filepath.Join(w.dir, "dkim")
	os.Mkdir(keyDir, 0o755)
	ourRecords := map[string]string{} // name → TXT, as a resolver joins its strings
	var zone strings.Builder
	for _, k := range []struct{ domain, sel, algo string }{
		{"rsasig.test", "gh-rsa", dkimsign.RSA}, {"edsig.test", "gh-ed", dkimsign.Ed25519},
	} {
		out := run(t, gatehouseBinary(t), "dkim", "keygen", k.domain, k.sel, "--type", k.algo, "--dir", keyDir)
		zp := dns.NewZoneParser(strings.NewReader(out), "", "")
		rr, ok := zp.Next()
		txt, isTXT := rr.(*dns.TXT)
		if !ok || !isTXT || zp.Err() != nil {
			t.Fatalf("keygen printed no TXT record (%v):\n%s", zp.Err(), out)
		}
		name := strings.TrimSuffix(txt.Hdr.Name, ".")
		ourRecords[name] = strings.Join(txt.Txt, "")
		zone.WriteString(bench.DnsmasqTXT(name, strings.Join(txt.Txt, "")))
	}

	zone.WriteString(`# Nothing else under .test: NXDOMAIN, not REFUSED. Names under other
# TLDs get REFUSED (no upstream): the SPF temperror.
local=/test/
` + bench.DnsmasqTXT("pass.test", "v=spf1 ip4:"+spfGood+" -all") +
		bench.DnsmasqTXT("soft.test", "v=spf1 ip4:"+spfGood+" ~all") +
		"host-record=nospf.test,10.77.0.99\n" +
		bench.DnsmasqTXT("dk.test", "v=spf1 ip4:"+spfGood+" -all") +
		bench.DnsmasqTXT("r2048._domainkey.dk.test", rsaRecord) +
		bench.DnsmasqTXT("ed1._domainkey.dk.test", edRecord) +
		bench.DnsmasqTXT("dmreject.test", "v=spf1 ip4:"+spfGood+" -all") +
		bench.DnsmasqTXT("_dmarc.dmreject.test", "v=DMARC1; p=reject") +
		bench.DnsmasqTXT("r2048._domainkey.dmreject.test", rsaRecord) +
		bench.DnsmasqTXT("dmquar.test", "v=spf1 ip4:"+spfGood+" -all") +
		bench.DnsmasqTXT("_dmarc.dmquar.test", "v=DMARC1; p=quarantine") +
		bench.DnsmasqTXT("dmnone.test", "v=spf1 ip4:"+spfGood+" -all") +
		bench.DnsmasqTXT("_dmarc.dmnone.test", "v=DMARC1; p=none") +
		"host-record=" + reverse(listed) + ".bl.test,127.0.0.2\n" +
		"host-record=" + reverse(errored) + ".err.test,127.255.255.254\n" +
		"mx-host=partner.test,mail.partner.test,10\n" +
		"host-record=mail.partner.test,10.77.0.25\n")
	zoneFile := filepath.Join(w.dir, "auth-dnsmasq.conf")
	os.WriteFile(zoneFile, []byte(zone.String()), 0o644)
	// A second dnsmasq beside the mail world's, on its own address; the
	// records are in a file, where dnsmasq reads quoted TXT strings.
	w.start(t, w.router, "auth-dnsmasq.out", "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--conf-file="+zoneFile, "--listen-address="+dnsAddr, "--bind-interfaces", "--user=root",
		"--log-queries", "--log-facility="+filepath.Join(w.dir, "auth-dnsmasq.log"))
	waitDNS(t, w.router, dnsAddr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("test dnsmasq's log:\n%s%s", w.log("auth-dnsmasq.out"), tail(w.log("auth-dnsmasq.log"), 60))
		}
	})

	conf := func(spfAction string) string {
		return `
hostname: gw
dns: {servers: [` + dnsAddr + `]}
smtp:
  hostname: ` + authHost + `
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: none}
  trusted_networks: [10.88.0.0/24]
  queue: {min_backoff: 2s, max_backoff: 4s}
  checks:
    dnsbl: {sites: [bl.test, err.test]}
    spf: {action: ` + spfAction + `}
  dkim_signing:
    - {domain: rsasig.test, selector: gh-rsa, key_file: ` + filepath.Join(keyDir, dkimsign.KeyFile("rsasig.test", "gh-rsa")) + `}
    - {domain: edsig.test, selector: gh-ed, key_file: ` + filepath.Join(keyDir, dkimsign.KeyFile("edsig.test", "gh-ed")) + `}
`
	}
	w.gatehouse(t, conf("tag"))

	const mx = "10.77.0.2:25"
	// from sends from a client address in the internet namespace.
	from := func(addr string, args ...string) (string, error) {
		return swaks(t, w.router, append([]string{"--server", mx, "--local-interface", addr}, args...)...)
	}
	// signed returns a file with a message signed by dkimpy, edited after
	// signing by edit if given.
	signed := func(name, domain, msg string, edit func(string) string, keys ...string) string {
		cmd := exec.Command("/usr/bin/python3", "-c", dkimpySign)
		cmd.Env = append(cmd.Environ(), "DKIM_DOMAIN="+domain, "DKIM_SIGN="+strings.Join(keys, " "))
		cmd.Stdin = strings.NewReader(msg)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("dkimpy: %v (python3-dkim and python3-nacl installed? test/deps.sh)\n%s", err, stderr.String())
		}
		out := stdout.String()
		if edit != nil {
			out = edit(out)
		}
		f := filepath.Join(w.dir, name+".eml")
		os.WriteFile(f, []byte(out), 0o644)
		return f
	}
	rsaSig, edSig := "r2048:rsa-sha256:"+rsaFile, "ed1:ed25519-sha256:"+edFile

	t.Run("SPF", func(t *testing.T) {
		for _, tc := range []struct {
			name, client, sender, want string
		}{
			{"pass", spfGood, "a@pass.test", "pass"},
			{"fail", spfBad, "a@pass.test", "fail"},
			{"softfail", spfBad, "a@soft.test", "softfail"},
			{"none", spfBad, "a@nospf.test", "none"},
			// dnsmasq without an upstream answers REFUSED for a name it
			// has no data about: a DNS error, as a broken server would.
			{"temperror", spfBad, "a@tempfail.example", "temperror"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := "<spf-" + tc.name + "@test>"
				if out, err := from(tc.client, "--from", tc.sender, "--to", "alice@example.test", "--header", "Message-ID: "+id); err != nil {
					t.Fatalf("not accepted: %v\n%s", err, out)
				}
				h := headers(t, waitDump(t, intlSink, 30*time.Second, id))
				if got := h.Get("Received-SPF"); !strings.HasPrefix(got, tc.want+" ") ||
					!strings.Contains(got, "client-ip="+tc.client+";") || !strings.Contains(got, `envelope-from="`+tc.sender+`"`) {
					t.Errorf("Received-SPF: %q, want %s for %s from %s", got, tc.want, tc.sender, tc.client)
				}
				ar := ours(t, h)
				if !hasResult(ar, "spf", tc.want, "smtp.mailfrom="+tc.sender) {
					t.Errorf("Authentication-Results: %q, want spf=%s smtp.mailfrom=%s", ar, tc.want, tc.sender)
				}
			})
		}
	})

	dkMsg := func(id string) string {
		return "From: Dora <dora@dk.test>\r\nTo: alice@example.test\r\nSubject: signed by dkimpy\r\n" +
			"Date: Tue, 03 Mar 2026 09:00:00 +0000\r\nMessage-ID: " + id + "\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: text/plain; charset=us-ascii\r\n\r\nSigned by dkimpy, verified by Gatehouse.\r\n"
	}
	t.Run("DKIM verified: RSA and Ed25519 signatures of dkimpy", func(t *testing.T) {
		id := "<dkim-pass@test>"
		f := signed("dkim-pass", "dk.test", dkMsg(id), nil, rsaSig, edSig)
		if out, err := from(spfGood, "--from", "dora@dk.test", "--to", "alice@example.test", "--data", f); err != nil {
			t.Fatalf("not accepted: %v\n%s", err, out)
		}
		ar := ours(t, headers(t, waitDump(t, intlSink, 30*time.Second, id)))
		if !hasResult(ar, "dkim", "pass", "header.d=dk.test", "header.s=r2048", "header.a=rsa-sha256") ||
			!hasResult(ar, "dkim", "pass", "header.d=dk.test", "header.s=ed1", "header.a=ed25519-sha256") {
			t.Errorf("Authentication-Results: %q, want dkim=pass for the rsa-sha256 and the ed25519-sha256 signature", ar)
		}
	})
	t.Run("DKIM verified: altered after signing", func(t *testing.T) {
		id := "<dkim-altered@test>"
		f := signed("dkim-altered", "dk.test", dkMsg(id), func(m string) string {
			return strings.Replace(m, "verified by Gatehouse", "forged in transit", 1)
		}, rsaSig, edSig)
		if out, err := from(spfGood, "--from", "dora@dk.test", "--to", "alice@example.test", "--data", f); err != nil {
			t.Fatalf("not accepted: %v\n%s", err, out)
		}
		ar := ours(t, headers(t, waitDump(t, intlSink, 30*time.Second, id)))
		if !hasResult(ar, "dkim", "fail", "header.s=r2048") || !hasResult(ar, "dkim", "fail", "header.s=ed1") || hasResult(ar, "dkim", "pass") {
			t.Errorf("Authentication-Results: %q, want dkim=fail for both signatures", ar)
		}
	})

	t.Run("DMARC", func(t *testing.T) {
		t.Run("p=reject, nothing aligned passes: refused", func(t *testing.T) {
			out, err := from(spfBad, "--from", "x@dmreject.test", "--to", "alice@example.test", "--header", "Message-ID: <dmarc-reject@test>")
			if err == nil || !strings.Contains(out, "<** 550 5.7.1") {
				t.Errorf("not refused with 550 5.7.1:\n%s", out)
			}
			for _, in := range w.queueList(t) {
				if in.From == "x@dmreject.test" {
					t.Errorf("queued all the same: %+v", in)
				}
			}
		})
		t.Run("p=quarantine: held", func(t *testing.T) {
			if out, err := from(spfBad, "--from", "x@dmquar.test", "--to", "alice@example.test", "--header", "Message-ID: <dmarc-quar@test>"); err != nil {
				t.Fatalf("not accepted: %v\n%s", err, out)
			}
			var id string
			for _, in := range w.queueList(t) {
				if in.From == "x@dmquar.test" {
					id = in.ID
					if !in.Hold {
						t.Errorf("queued but not held: %+v", in)
					}
				}
			}
			if id == "" {
				t.Fatalf("not in the queue: %+v", w.queueList(t))
			}
			out, err := gatehouseCmd(t, w.netWorld, "queue", "list")
			if err != nil || !strings.Contains(out, id+"!") {
				t.Errorf("queue list does not mark %s held: %v\n%s", id, err, out)
			}
		})
		t.Run("p=none: tagged", func(t *testing.T) {
			id := "<dmarc-none@test>"
			if out, err := from(spfBad, "--from", "x@dmnone.test", "--to", "alice@example.test", "--header", "Message-ID: "+id); err != nil {
				t.Fatalf("not accepted: %v\n%s", err, out)
			}
			ar := ours(t, headers(t, waitDump(t, intlSink, 30*time.Second, id)))
			if !hasResult(ar, "dmarc", "fail", "header.from=dmnone.test", "policy.dmarc=none") {
				t.Errorf("Authentication-Results: %q, want dmarc=fail header.from=dmnone.test policy.dmarc=none", ar)
			}
		})
		t.Run("p=reject, aligned DKIM passes, SPF fails: delivered", func(t *testing.T) {
			id := "<dmarc-dkim@test>"
			msg := strings.ReplaceAll(dkMsg(id), "dora@dk.test", "x@dmreject.test")
			f := signed("dmarc-dkim", "dmreject.test", msg, nil, rsaSig)
			if out, err := from(spfBad, "--from", "x@dmreject.test", "--to", "alice@example.test", "--data", f); err != nil {
				t.Fatalf("not accepted: %v\n%s", err, out)
			}
			ar := ours(t, headers(t, waitDump(t, intlSink, 30*time.Second, id)))
			if !hasResult(ar, "spf", "fail") || !hasResult(ar, "dkim", "pass", "header.d=dmreject.test") ||
				!hasResult(ar, "dmarc", "pass", "header.from=dmreject.test") {
				t.Errorf("Authentication-Results: %q, want spf=fail dkim=pass dmarc=pass", ar)
			}
		})
		// Held from the start: had it been released, it would be there by
		// now, behind the messages sent after it.
		noDump(t, intlSink, "<dmarc-quar@test>")
		noDump(t, intlSink, "<dmarc-reject@test>")
	})

	t.Run("DNSBL", func(t *testing.T) {
		out, err := from(listed, "--from", "a@pass.test", "--to", "alice@example.test")
		if err == nil || !strings.Contains(out, "<** 554 5.7.1") || !strings.Contains(out, "blocked using bl.test") {
			t.Errorf("a listed client was not refused naming the zone:\n%s", out)
		}
		if i, j := strings.Index(out, "-> EHLO"), strings.Index(out, "<** 554"); i < 0 || j < i || strings.Contains(out, "-> MAIL") {
			t.Errorf("not refused at EHLO:\n%s", out)
		}
		id := "<dnsbl-error@test>"
		if out, err := from(errored, "--from", "a@pass.test", "--to", "alice@example.test", "--header", "Message-ID: "+id); err != nil {
			t.Errorf("the 127.255.255.254 answer was taken as a listing: %v\n%s", err, out)
		} else {
			waitDump(t, intlSink, 30*time.Second, id)
		}
	})

	t.Run("Authentication-Results from outside claiming our id", func(t *testing.T) {
		id := "<ar-strip@test>"
		if out, err := from(spfGood, "--from", "a@pass.test", "--to", "alice@example.test", "--header", "Message-ID: "+id,
			"--add-header", "Authentication-Results: "+authHost+"; dkim=pass header.d=forged1.test",
			"--add-header", "Authentication-Results: (forged) MX.Example.TEST; dmarc=pass header.from=forged2.test",
			"--add-header", "Authentication-Results: other.example; spf=pass smtp.mailfrom=kept@other.example"); err != nil {
			t.Fatalf("not accepted: %v\n%s", err, out)
		}
		d := waitDump(t, intlSink, 30*time.Second, id)
		if strings.Contains(d, "forged1.test") || strings.Contains(d, "forged2.test") {
			t.Errorf("a header claiming %s was kept:\n%s", authHost, d)
		}
		all := headers(t, d)["Authentication-Results"]
		if len(all) != 2 || !strings.HasPrefix(all[0], authHost+";") || !strings.Contains(all[1], "kept@other.example") {
			t.Errorf("want ours, then other.example's: %q", all)
		}
	})

	t.Run("DKIM signing verified by dkimpy", func(t *testing.T) {
		recordsJSON, _ := json.Marshal(ourRecords)
		for _, domain := range []string{"rsasig.test", "edsig.test"} {
			t.Run(domain, func(t *testing.T) {
				id := "<out-" + domain + ">"
				mustSwaks(t, w.intl, "--server", "10.88.0.2:25", "--from", "bob@"+domain, "--to", "x@partner.test",
					"--header", "Message-ID: "+id, "--header", "Subject: signed by Gatehouse")
				d := waitDump(t, partnerSink, 30*time.Second, id)
				if n := strings.Count(d, "DKIM-Signature:"); n != 1 {
					t.Fatalf("%d DKIM-Signature fields, want 1:\n%s", n, d)
				}
				msg := strings.ReplaceAll(strings.ReplaceAll(d, "\r\n", "\n"), "\n", "\r\n")
				cmd := exec.Command("/usr/bin/python3", "-c", dkimpyVerify)
				cmd.Env = append(cmd.Environ(), "DKIM_RECORDS="+string(recordsJSON))
				cmd.Stdin = strings.NewReader(msg)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("dkimpy: %v\n%s", err, stderr.String())
				}
				if got := strings.TrimSpace(stdout.String()); got != "True" {
					t.Errorf("dkimpy says %q, want True\n%s\n--- message ---\n%s", got, stderr.String(), d)
				}
			})
		}
	})

	// Last: it changes the config.
	t.Run("SPF fail refused at MAIL with spf.action reject", func(t *testing.T) {
		w.reload(t, conf("reject"))
		var out string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			var err error
			out, err = from(spfBad, "--from", "a@pass.test", "--to", "alice@example.test", "--header", "Subject: spf-reject")
			if err != nil && strings.Contains(out, "<** 550 5.7.23") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SPF fail not refused within 30s of the reload:\n%s", out)
			}
		}
		if i, j := strings.Index(out, "-> MAIL FROM"), strings.Index(out, "<** 550 5.7.23"); i < 0 || j < i || strings.Contains(out, "-> RCPT") {
			t.Errorf("not refused at MAIL:\n%s", out)
		}
		// A pass is still accepted.
		id := "<spf-reject-pass@test>"
		if out, err := from(spfGood, "--from", "a@pass.test", "--to", "alice@example.test", "--header", "Message-ID: "+id); err != nil {
			t.Fatalf("SPF pass refused: %v\n%s", err, out)
		}
		waitDump(t, intlSink, 30*time.Second, id)
	})
}

// reverse is an IPv4 address's octets reversed, as DNSBLs are asked.
func reverse(ip string) string {
	o := strings.Split(ip, ".")
	return fmt.Sprintf("%s.%s.%s.%s", o[3], o[2], o[1], o[0])
}

// headers reads the header of a message the sink dumped (its own X-
// fields first); continuation lines are unfolded.
func headers(t *testing.T, dump string) mail.Header {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(dump))
	if err != nil {
		t.Fatalf("unreadable message: %v\n%s", err, dump)
	}
	return m.Header
}

// ours is the Authentication-Results value this gateway added.
func ours(t *testing.T, h mail.Header) string {
	t.Helper()
	var found []string
	for _, v := range h["Authentication-Results"] {
		if strings.HasPrefix(v, authHost+";") {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one Authentication-Results of %s, have %q", authHost, h["Authentication-Results"])
	}
	return found[0]
}

// hasResult says whether an Authentication-Results value reports method=
// value with all the params (key=value tokens) given.
func hasResult(ar, method, value string, params ...string) bool {
	items := strings.Split(ar, ";")
	for _, it := range items[1:] {
		f := strings.Fields(it)
		if len(f) == 0 || f[0] != method+"="+value {
			continue
		}
		ok := true
		for _, p := range params {
			found := false
			for _, x := range f[1:] {
				found = found || x == p
			}
			ok = ok && found
		}
		if ok {
			return true
		}
	}
	return false
}
