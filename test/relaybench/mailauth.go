package main

// `make bench-mailauth` (relaybench -mailauth): the relay with mail
// authentication on against Postfix with the milters doing the same, in
// the same run, then DKIM signing against opendkim.
//
//   auth: a pre-signed 4 KiB message (dkimpy, RSA-2048, relaxed/relaxed)
//         from a@example.net, sent from 127.0.0.2 (the SPF record's one
//         address, not a trusted client) by a Go sender (smtp-source cannot
//         send a file) with smtp-source's pattern: SESSIONS parallel
//         sessions, one connection per message. Gatehouse: smtp.checks
//         (DNSBL with one zone, SPF, DKIM, DMARC p=reject). Postfix: the
//         anchor configuration (../shared/bench/postfix_baseline.sh setup)
//         plus reject_rbl_client, policyd-spf, opendkim (verify) and
//         opendmarc (postfix_milters.sh).
//   sign: the same message unsigned, from the trusted client 127.0.0.1.
//         Gatehouse: smtp.dkim_signing; Postfix: opendkim in sign mode.
//         Same key (RSA-2048), same selector.
//
// DNS: dnsmasq on 10.53.0.1:53 (on lo) in a network namespace of the bench's own
// (the process re-executes itself there with `ip netns exec`, which
// bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf: the
// milters, policyd-spf, smtpd and the relay all ask that dnsmasq, which
// answers from its records). Every message must reach smtp-sink (-D dump)
// with the results (Gatehouse's Authentication-Results: spf, dkim and
// dmarc pass; Postfix's Received-SPF Pass and opendkim's and opendmarc's
// Authentication-Results) or the signature; one signed message of each
// side is verified by dkimpy. Any loss or a missing result fails the run.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"gatehouse/test/bench"
)

const (
	netnsEnv     = "RELAYBENCH_NETNS"
	authDomain   = "example.net" // not under .test: libunbound (opendkim) answers NXDOMAIN itself for .test
	authSelector = "bench"
	authFrom     = "a@" + authDomain
	authservID   = "bench.localdomain"
	outsideIP    = "127.0.0.2" // the SPF record's address: an outside client
	trustedIP    = "127.0.0.1" // the trusted client (signing)
	dnsblZone    = "bl.test"
	pfInstance   = "pfauth"
	dnsIP        = "10.53.0.1" // dnsmasq, on lo in the namespace (libunbound never asks 127.0.0.0/8)
)

// mailAuth runs the mail authentication benchmark, in a network namespace
// of its own.
func mailAuth(ctx context.Context, o opts) error {
	if os.Getenv(netnsEnv) == "" {
		return inNetns(ctx)
	}
	return mailAuthInner(ctx, o)
}

// inNetns makes the namespace (loopback up, its resolv.conf), re-executes
// this program in it, and removes both afterwards.
func inNetns(ctx context.Context) error {
	name := fmt.Sprintf("relaybench-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	_, statErr := os.Stat("/etc/netns")
	etc := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	defer func() {
		os.RemoveAll(etc)
		if statErr != nil {
			os.Remove("/etc/netns") // only if this run made it (and it is empty)
		}
	}()
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+dnsIP+"\noptions attempts:2 timeout:2\n"), 0o644); err != nil {
		return err
	}
	for _, c := range [][]string{
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "-n", name, "addr", "add", dnsIP + "/32", "dev", "lo"},
		// 25,000 connections a side: ports and TIME_WAIT of this namespace only
		{"ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", name, self}, os.Args[1:]...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 120 * time.Second
	cmd.Env = append(os.Environ(), netnsEnv+"="+name)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("in namespace %s: %w", name, err)
	}
	return nil
}

func mailAuthInner(ctx context.Context, o opts) error {
	var err error
	if o.bin, err = bench.Binary(o.bin); err != nil {
		return err
	}
	if err := bench.Tools("make deps", "smtp-sink", "dnsmasq", "python3", "opendkim", "opendmarc", "policyd-spf", "postconf"); err != nil {
		return err
	}
	if err := raiseNofile(4096); err != nil {
		return err
	}
	script, err := bench.FromRoot(o.script)
	if err != nil {
		return err
	}
	milters, err := bench.FromRoot(o.miltersScript)
	if err != nil {
		return err
	}
	dir, remove, err := bench.WorkDir("mailauthbench", o.keep)
	if err != nil {
		return err
	}
	defer remove()
	t0 := time.Now()

	// The sender's key: dkimpy signs the inbound message with it, and both
	// sides sign the outbound message with it.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "dkim.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyRecord := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(spki)

	stopDNS, err := startDNS(dir, keyRecord)
	if err != nil {
		return err
	}
	defer stopDNS()
	unsigned := authMessage(o.size)
	signed, err := dkimpy(dir, "sign", keyFile, keyRecord, unsigned)
	if err != nil {
		return err
	}
	fmt.Printf("mailauth: message %d bytes unsigned, %d signed; %d messages x %d reps, %d sessions\n", len(unsigned), len(signed), o.msgs, o.reps, o.sessions)

	checksYAML := fmt.Sprintf(`  checks:
    authserv_id: %s
    dnsbl: {sites: [%s]}
    spf: {action: tag}
    dmarc: {reject: reject, quarantine: hold}
`, authservID, dnsblZone)
	signYAML := fmt.Sprintf(`  dkim_signing:
    - {domain: %s, selector: %s, key_file: %s}
`, authDomain, authSelector, keyFile)

	var errs []error
	// 1. Gatehouse with the checks.
	ghAuth, err := ghSide(ctx, o, filepath.Join(dir, "gh-auth"), "auth_gatehouse", checksYAML, outsideIP, signed, checkAuthGatehouse, "")
	if err != nil {
		return err
	}
	// 2. Postfix with the milters.
	pfAuth, err := pfSide(ctx, o, filepath.Join(dir, "pf-auth"), "auth_postfix_milters", "auth", script, milters, keyFile, outsideIP, signed, checkAuthPostfix, "")
	if err != nil {
		errs = append(errs, err)
	}
	// 3. Signing: Gatehouse, then opendkim.
	ghSign, err := ghSide(ctx, o, filepath.Join(dir, "gh-sign"), "dkim_sign_gatehouse", signYAML, trustedIP, unsigned, checkSigned, keyRecord)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	pfSign, err := pfSide(ctx, o, filepath.Join(dir, "pf-sign"), "dkim_sign_opendkim", "sign", script, milters, keyFile, trustedIP, unsigned, checkSigned, keyRecord)
	if err != nil {
		errs = append(errs, err)
	}

	fmt.Printf("params: mailauth msgs=%d size=%d signed_size=%d sessions=%d reps=%d warmup=%d cores=%d loadavg_at_end='%s' total_s=%.0f\n",
		o.msgs, len(unsigned), len(signed), o.sessions, o.reps, o.warmup, runtime.NumCPU(), bench.Loadavg(), time.Since(t0).Seconds())
	fmt.Printf("auth_gatehouse_accept_msgs_per_s=%s\nauth_postfix_milters_accept_msgs_per_s=%s\n", bench.F1(ghAuth.accept.Med), bench.F1(pfAuth.accept.Med))
	fmt.Printf("auth_gatehouse_busy_ms_per_msg=%s\nauth_postfix_milters_busy_ms_per_msg=%s\n", bench.F2(ghAuth.busyPerMsg.Med), bench.F2(pfAuth.busyPerMsg.Med))
	fmt.Printf("dkim_sign_gatehouse_busy_ms_per_msg=%s\ndkim_sign_opendkim_busy_ms_per_msg=%s\n", bench.F2(ghSign.busyPerMsg.Med), bench.F2(pfSign.busyPerMsg.Med))
	fmt.Printf("auth_gatehouse_msgs_per_s=%s\n", bench.F1(ghAuth.e2e.Med))
	fmt.Printf("auth_postfix_milters_msgs_per_s=%s\n", bench.F1(pfAuth.e2e.Med))
	fmt.Printf("auth_ratio=%s\n", bench.F2(ghAuth.e2e.Med/pfAuth.e2e.Med))
	fmt.Printf("dkim_sign_gatehouse_msgs_per_s=%s\n", bench.F1(ghSign.e2e.Med))
	fmt.Printf("dkim_sign_opendkim_msgs_per_s=%s\n", bench.F1(pfSign.e2e.Med))
	fmt.Printf("dkim_sign_ratio=%s\n", bench.F2(ghSign.e2e.Med/pfSign.e2e.Med))
	return errors.Join(errs...)
}

// startDNS runs dnsmasq on dnsIP:53 with the sender's SPF, DKIM and
// DMARC records; nothing else under .test exists (the DNSBL zone answers
// NXDOMAIN: not listed).
func startDNS(dir, keyRecord string) (stop func(), err error) {
	zone := "local=/test/\nlocal=/" + authDomain + "/\n" +
		bench.DnsmasqTXT(authDomain, "v=spf1 ip4:"+outsideIP+" -all") +
		bench.DnsmasqTXT("_dmarc."+authDomain, "v=DMARC1; p=reject") +
		bench.DnsmasqTXT(authSelector+"._domainkey."+authDomain, keyRecord)
	zf := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(zf, []byte(zone), 0o644); err != nil {
		return nil, err
	}
	cmd, err := startLogged(filepath.Join(dir, "dnsmasq"), "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--conf-file="+zf, "--listen-address="+dnsIP, "--bind-interfaces", "--user=root",
		"--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--cache-size=1000")
	if err != nil {
		return nil, fmt.Errorf("dnsmasq: %w", err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	c := new(dns.Client)
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(authDomain), dns.TypeTXT)
	for range 100 {
		if r, _, err := c.Exchange(m, dnsIP+":53"); err == nil && len(r.Answer) == 1 {
			return stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("dnsmasq does not answer: %s", bench.ReadTail(filepath.Join(dir, "dnsmasq.err"), 500))
}

// authMessage is a size-byte message from authFrom (CRLF, no line starting
// with a dot).
func authMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Alice <" + authFrom + ">\r\nTo: <" + rcpt + ">\r\nSubject: mail authentication benchmark\r\n" +
		"Date: Tue, 03 Mar 2026 09:00:00 +0000\r\nMessage-ID: <mailauth-bench@" + authDomain + ">\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := strings.Repeat("abcdefghij", 7) + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	if r := size - b.Len(); r >= 3 {
		b.WriteString(strings.Repeat("z", r-2) + "\r\n")
	}
	return b.Bytes()
}

// dkimpy signs (mode "sign": the message with the key, selector and domain
// above) or verifies (mode "verify": the message's d=example.net
// signature against keyRecord, no DNS) with /usr/bin/python3's dkim.
func dkimpy(dir, mode, keyFile, keyRecord string, msg []byte) ([]byte, error) {
	const prog = `
import os, sys
import dkim
msg = sys.stdin.buffer.read()
if sys.argv[1] == "sign":
    key = open(os.environ["KEY"], "rb").read()
    sig = dkim.sign(msg, os.environ["SELECTOR"].encode(), os.environ["DOMAIN"].encode(), key,
                    canonicalize=(b"relaxed", b"relaxed"), include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"])
    sys.stdout.buffer.write(sig + msg)
else:
    rec = os.environ["RECORD"].encode()
    ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: rec)
    print("pass" if ok else "fail")
    sys.exit(0 if ok else 1)
`
	cmd := exec.Command("/usr/bin/python3", "-c", prog, mode)
	cmd.Env = append(os.Environ(), "KEY="+keyFile, "SELECTOR="+authSelector, "DOMAIN="+authDomain, "RECORD="+keyRecord)
	cmd.Stdin = bytes.NewReader(msg)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dkimpy %s: %v: %s%s (python3-dkim installed? make deps)", mode, err, out.String(), stderr.String())
	}
	return out.Bytes(), nil
}

// ---------------------------------------------------------------- sides

type sideResult struct {
	accept, e2e, busyPerMsg bench.Stat
}

// target is what a repetition needs of a side: where to send, where the
// sink writes, whether the MTA's queue is empty, whether it is still up.
type target struct {
	port         int
	sinkOut      string
	dump         string
	queueEmpty   func() (bool, error)
	alive        func() error
	cpu          func() float64 // the MTA's own CPU seconds, when known
	check        func(h []header) error
	keyRecord    string // verify one message's signature with dkimpy
	dir, localIP string
}

func ghSide(ctx context.Context, o opts, dir, prefix, extraYAML, localIP string, msg []byte, check func([]header) error, keyRecord string) (sideResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sideResult{}, err
	}
	dump, err := dumpDir(dir)
	if err != nil {
		return sideResult{}, err
	}
	in, err := startRelay(o, dir, fmt.Sprintf(`hostname: bench
smtp:
  hostname: %s
  listen: {smtp: "127.0.0.1:%d", submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:%d", tls: none}
  trusted_networks: [%s/32]
  limits: {connections_per_client: 1000, connections: 2000, message_size: 200MiB}
%s`, authservID, o.port, o.sinkPort, trustedIP, extraYAML), "-D", filepath.Join(dump, "m"))
	if err != nil {
		return sideResult{}, err
	}
	defer in.stop()
	t := target{port: o.port, sinkOut: in.sinkOut, dump: dump, check: check, keyRecord: keyRecord, dir: dir, localIP: localIP,
		queueEmpty: func() (bool, error) {
			q, err := in.queue()
			return len(q) == 0, err
		},
		cpu: func() float64 { return bench.ProcCPU(in.gh.Process.Pid) },
		alive: func() error {
			select {
			case <-in.exited:
				return fmt.Errorf("gatehouse exited: %v: %s", in.exitErr, bench.ReadTail(in.log, 2000))
			default:
				return nil
			}
		}}
	r, err := runSide(ctx, o, prefix, t, msg)
	if p := bench.LogProblems("relaybench", in.log); p > 0 {
		fmt.Printf("%s_log_problems=%d\n", prefix, p)
	}
	return r, err
}

func pfSide(ctx context.Context, o opts, dir, prefix, kind, baseline, milters, keyFile, localIP string, msg []byte, check func([]header) error, keyRecord string) (r sideResult, err error) {
	r = sideResult{bench.Stats(nil), bench.Stats(nil), bench.Stats(nil)}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	for _, p := range []int{o.port, o.sinkPort} {
		if err := portFree(p); err != nil {
			return r, err
		}
	}
	dump, err := dumpDir(dir)
	if err != nil {
		return r, err
	}
	sink, err := startLogged(filepath.Join(dir, "sink"), "smtp-sink", "-4", "-c", "-u", "postfix", "-D", filepath.Join(dump, "m"),
		fmt.Sprintf("127.0.0.1:%d", o.sinkPort), "1024")
	if err != nil {
		return r, err
	}
	defer func() { sink.Process.Kill(); sink.Wait() }()
	if err := waitListen(o.sinkPort, nil); err != nil {
		return r, fmt.Errorf("smtp-sink: %w", err)
	}
	work := filepath.Join(dir, "milters")
	script := func(args ...string) error {
		cmd := exec.Command("bash", append([]string{milters}, args...)...)
		cmd.Env = append(os.Environ(), "BASELINE="+baseline, "INSTANCE="+pfInstance, fmt.Sprintf("PF_PORT=%d", o.port),
			fmt.Sprintf("SINK_PORT=%d", o.sinkPort), "WORK="+work, "KEY="+keyFile, "DOMAIN="+authDomain,
			"SELECTOR="+authSelector, "AUTHSERV_ID="+authservID, "DNSBL_ZONE="+dnsblZone, "TRUSTED="+trustedIP, "DNS="+dnsIP)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
	defer script("stop")
	if err := script("start", kind); err != nil {
		return r, fmt.Errorf("%s: start %s: %w", milters, kind, err)
	}
	queue := "/var/spool/" + pfInstance
	t := target{port: o.port, sinkOut: filepath.Join(dir, "sink.out"), dump: dump, check: check, keyRecord: keyRecord, dir: dir, localIP: localIP,
		queueEmpty: func() (bool, error) {
			for _, g := range []string{"incoming/*", "active/*", "maildrop/*", "hold/*", "deferred/*/*"} {
				m, _ := filepath.Glob(filepath.Join(queue, g))
				if len(m) > 0 {
					if strings.HasPrefix(g, "deferred") {
						return false, fmt.Errorf("%d message(s) deferred: %s", len(m), bench.ReadTail("/var/log/"+pfInstance+".log", 1500))
					}
					return false, nil
				}
			}
			return true, nil
		},
		alive: func() error { return nil }}
	return runSide(ctx, o, prefix, t, msg)
}

// runSide runs the warm-up and the repetitions against t and prints a
// line per repetition.
func runSide(ctx context.Context, o opts, prefix string, t target, msg []byte) (sideResult, error) {
	var accept, e2e, busy []float64
	res := func() sideResult { return sideResult{bench.Stats(accept), bench.Stats(e2e), bench.Stats(busy)} }
	for i := 0; i <= o.reps; i++ {
		if i == 0 && o.warmup == 0 {
			continue
		}
		if i > 0 {
			if err := bench.Sleep(ctx, o.settle); err != nil {
				return res(), err
			}
		}
		idle, err := waitIdle(ctx, o.idleWait)
		if err != nil {
			return res(), err
		}
		n := o.msgs
		if i == 0 {
			n = o.warmup
		}
		a, e, b, cpu, err := authRep(ctx, o, t, n, msg, i == 1)
		if err != nil {
			return res(), fmt.Errorf("%s rep %d: %w", prefix, i, err)
		}
		if i == 0 {
			continue
		}
		accept, e2e, busy = append(accept, float64(n)/a), append(e2e, float64(n)/e), append(busy, 1000*b/float64(n))
		own := "" // the relay's own CPU (Postfix's is spread over many processes: the machine's is compared)
		if !math.IsNaN(cpu) {
			own = fmt.Sprintf(" gatehouse_cpu_ms_per_msg=%.2f", cpu)
		}
		fmt.Printf("rep=%d ok=1 msgs=%d size=%d sessions=%d accept_s=%.3f e2e_s=%.3f %s_accept_msgs_per_s=%.1f %s_e2e_msgs_per_s=%.1f"+
			" machine_busy_s=%.2f %s_busy_ms_per_msg=%.2f%s checked=%d idle_ok=%d\n",
			i, n, len(msg), o.sessions, a, e, prefix, float64(n)/a, prefix, float64(n)/e, b, prefix, 1000*b/float64(n), own, n, b2i(idle))
	}
	return res(), nil
}

// authRep sends n copies of msg, waits until the sink has them all and the
// queue is empty, then checks every message the sink got in this
// repetition. Times in seconds: accept (sender done), e2e (all in the
// sink), busy (machine CPU, all processes).
func authRep(ctx context.Context, o opts, t target, n int, msg []byte, verify bool) (acceptS, e2eS, busyS, cpuMS float64, err error) {
	if empty, err := t.queueEmpty(); err != nil || !empty {
		return 0, 0, 0, 0, fmt.Errorf("queue not empty before the repetition (%v)", err)
	}
	off := dumpSizes(t.dump)
	c0 := bench.SinkCount(t.sinkOut)
	var cpu0 float64
	if t.cpu != nil {
		cpu0 = t.cpu()
	}
	busy0, _ := bench.SysTicks()
	t0 := time.Now()
	sctx, cancel := context.WithTimeout(ctx, o.timeout)
	err = sendMany(sctx, t.localIP, t.port, o.sessions, n, msg)
	cancel()
	acceptS = time.Since(t0).Seconds()
	if err != nil {
		if aerr := t.alive(); aerr != nil {
			err = aerr
		}
		return 0, 0, 0, 0, err
	}
	deadline := time.Now().Add(o.drain)
	for {
		if c := bench.SinkCount(t.sinkOut); c-c0 >= n {
			empty, err := t.queueEmpty()
			if err != nil {
				return 0, 0, 0, 0, err
			}
			if empty {
				e2eS = time.Since(t0).Seconds()
				break
			}
		} else if _, err := t.queueEmpty(); err != nil { // deferred
			return 0, 0, 0, 0, err
		}
		if err := t.alive(); err != nil {
			return 0, 0, 0, 0, err
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, 0, fmt.Errorf("sink got %d of %d messages after %s", bench.SinkCount(t.sinkOut)-c0, n, o.drain)
		}
		if err := bench.Sleep(ctx, 25*time.Millisecond); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	busy1, _ := bench.SysTicks()
	busyS = float64(busy1-busy0) / bench.ClkTck
	cpuMS = math.NaN()
	if t.cpu != nil {
		cpuMS = 1000 * (t.cpu() - cpu0) / float64(n)
	}
	// The dump is written as each message ends; give the last a moment.
	var msgs [][]header
	var raw [][]byte
	for range 40 {
		if msgs, raw, err = readDump(t.dump, off); err != nil {
			return 0, 0, 0, 0, err
		}
		if len(msgs) >= n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(msgs) != n {
		return 0, 0, 0, 0, fmt.Errorf("the sink's dump has %d messages for %d sent", len(msgs), n)
	}
	bad := 0
	var first error
	for _, h := range msgs {
		if err := t.check(h); err != nil {
			bad++
			if first == nil {
				first = err
			}
		}
	}
	if bad > 0 {
		return 0, 0, 0, 0, fmt.Errorf("%d of %d messages without the expected results; the first: %w", bad, n, first)
	}
	if verify && t.keyRecord != "" {
		if _, err := dkimpy(t.dir, "verify", "", t.keyRecord, bytes.ReplaceAll(raw[0], []byte("\n"), []byte("\r\n"))); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("a signed message does not verify: %w", err)
		}
		fmt.Println("dkimpy_verify=pass")
	}
	return acceptS, e2eS, busyS, cpuMS, nil
}

// ---------------------------------------------------------------- sender

// sendMany sends n copies of msg over sessions parallel sessions, one
// connection per message (smtp-source's default), from localIP.
func sendMany(ctx context.Context, localIP string, port, sessions, n int, msg []byte) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	data := append(append([]byte{}, msg...), ".\r\n"...)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 10 * time.Second}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if err := sendOne(ctx, &d, addr, data); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

func sendOne(ctx context.Context, d *net.Dialer, addr string, data []byte) error {
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	bw := bufio.NewWriterSize(c, 8192)
	step := func(cmd []byte, code string) error {
		if cmd != nil {
			bw.Write(cmd)
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if err := reply(br, code); err != nil {
			return fmt.Errorf("after %q: %w", strings.TrimSpace(string(cmd[:min(len(cmd), 40)])), err)
		}
		return nil
	}
	for _, s := range []struct {
		cmd  []byte
		code string
	}{
		{nil, "220"},
		{[]byte("EHLO client." + authDomain + "\r\n"), "250"},
		{[]byte("MAIL FROM:<" + authFrom + ">\r\n"), "250"},
		{[]byte("RCPT TO:<" + rcpt + ">\r\n"), "250"},
		{[]byte("DATA\r\n"), "354"},
		{data, "250"},
		{[]byte("QUIT\r\n"), "221"},
	} {
		if err := step(s.cmd, s.code); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------- the sink's dump

type header struct{ name, value string }

// dumpDir is a directory smtp-sink (user postfix) may write its dump
// files in (-D DIR/m: it appends a random suffix to the name).
func dumpDir(dir string) (string, error) {
	d := filepath.Join(dir, "dump")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	for p := d; p != "/"; p = filepath.Dir(p) { // the work directory is 0700
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(p, st.Mode().Perm()|0o005)
		}
	}
	u, err := user.Lookup("postfix")
	if err != nil {
		return "", err
	}
	uid, _ := strconv.Atoi(u.Uid)
	return d, os.Chown(d, uid, -1)
}

// dumpSizes are the sizes of the dump files in dir.
func dumpSizes(dir string) map[string]int64 {
	m := map[string]int64{}
	fs, _ := os.ReadDir(dir)
	for _, f := range fs {
		if st, err := f.Info(); err == nil {
			m[f.Name()] = st.Size()
		}
	}
	return m
}

// readDump parses smtp-sink's -D files in dir from the offsets off (0 for
// files not in it): one message per X-Client-Addr line; its header
// fields, unfolded, and its raw text (without smtp-sink's own X- lines).
func readDump(dir string, off map[string]int64) ([][]header, [][]byte, error) {
	var b []byte
	fs, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range fs {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		_, err = f.Seek(off[e.Name()], io.SeekStart)
		if err == nil {
			var c []byte
			c, err = io.ReadAll(f)
			b = append(b, c...)
		}
		f.Close()
		if err != nil {
			return nil, nil, err
		}
	}
	var msgs [][]header
	var raws [][]byte
	for _, chunk := range bytes.Split(b, []byte("X-Client-Addr: ")) {
		if len(bytes.TrimSpace(chunk)) == 0 {
			continue
		}
		var hs []header
		var raw bytes.Buffer
		lines := strings.Split(string(chunk), "\n")
		inHeader := true
		for i, l := range lines {
			l = strings.TrimSuffix(l, "\r")
			if i == 0 {
				continue // the address
			}
			if inHeader && l == "" {
				inHeader = false
			}
			if inHeader {
				if (l[0] == ' ' || l[0] == '\t') && len(hs) > 0 {
					hs[len(hs)-1].value += " " + strings.TrimSpace(l)
				} else if k, v, ok := strings.Cut(l, ":"); ok {
					if strings.HasPrefix(k, "X-Client-") || strings.HasPrefix(k, "X-Helo-") || strings.HasPrefix(k, "X-Mail-") || strings.HasPrefix(k, "X-Rcpt-") {
						continue
					}
					hs = append(hs, header{strings.ToLower(k), strings.TrimSpace(v)})
				}
			}
			raw.WriteString(l + "\n")
		}
		msgs = append(msgs, hs)
		raws = append(raws, bytes.TrimSuffix(raw.Bytes(), []byte("\n\n")))
	}
	return msgs, raws, nil
}

func values(h []header, name string) []string {
	var v []string
	for _, f := range h {
		if f.name == name {
			v = append(v, f.value)
		}
	}
	return v
}

// checkAuthGatehouse: our one Authentication-Results with spf, dkim and
// dmarc pass.
func checkAuthGatehouse(h []header) error {
	for _, ar := range values(h, "authentication-results") {
		if strings.HasPrefix(ar, authservID+";") && strings.Contains(ar, "spf=pass") &&
			strings.Contains(ar, "dkim=pass") && strings.Contains(ar, "dmarc=pass") {
			return nil
		}
	}
	return fmt.Errorf("no Authentication-Results: %s; spf=pass dkim=pass dmarc=pass in %q", authservID, values(h, "authentication-results"))
}

// checkAuthPostfix: policyd-spf's Received-SPF: Pass, opendkim's dkim=pass
// and opendmarc's dmarc=pass.
func checkAuthPostfix(h []header) error {
	spf, dk, dm := false, false, false
	for _, v := range values(h, "received-spf") {
		spf = spf || strings.HasPrefix(v, "Pass")
	}
	for _, ar := range values(h, "authentication-results") {
		if strings.HasPrefix(ar, authservID+";") {
			dk = dk || strings.Contains(ar, "dkim=pass")
			dm = dm || strings.Contains(ar, "dmarc=pass")
		}
	}
	if !spf || !dk || !dm {
		return fmt.Errorf("want Received-SPF: Pass, dkim=pass, dmarc=pass: Received-SPF %q, Authentication-Results %q",
			values(h, "received-spf"), values(h, "authentication-results"))
	}
	return nil
}

// checkSigned: a DKIM-Signature of d=example.net, s=bench.
func checkSigned(h []header) error {
	for _, v := range values(h, "dkim-signature") {
		d, sel := false, false
		for _, tag := range strings.Split(strings.NewReplacer(" ", "", "\t", "").Replace(v), ";") {
			d = d || tag == "d="+authDomain
			sel = sel || tag == "s="+authSelector
		}
		if d && sel {
			return nil
		}
	}
	return fmt.Errorf("no DKIM-Signature d=%s s=%s in %q", authDomain, authSelector, values(h, "dkim-signature"))
}
