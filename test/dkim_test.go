//go:build e2e

package test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"gatehouse/dkimsign"
)

// dkimpyVerify is a verifier that is not ours: dkimpy (python3-dkim, with
// python3-nacl for Ed25519). It reads a message on stdin, answers DNS from
// the records in DKIM_RECORDS (name → TXT value, as a resolver joins its
// strings) and prints True or False for each DKIM-Signature, top down.
const dkimpyVerify = `
import json, logging, os, sys
import dkim
logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
records = json.loads(os.environ["DKIM_RECORDS"])
def dnsfunc(name, timeout=5):
    value = records.get(name.decode().rstrip("."))
    return value.encode() if value is not None else None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg, logger=logging.getLogger("dkimpy"))
def verify(i):
    # As dkim.verify does: a failed check (body hash mismatch) raises.
    try:
        return d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        logging.info("signature %d: %s", i, e)
        return False
n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
print(" ".join(str(verify(i)) for i in range(n)))
`

// A message Gatehouse signs verifies with dkimpy against the record
// `gatehouse dkim keygen` printed, for RSA and Ed25519 and both at once;
// altered in transit, it fails there too.
func TestDKIMSignVerifiesWithDkimpy(t *testing.T) {
	bin := gatehouseBinary(t)
	dir := t.TempDir()
	records := map[string]string{}
	signers := map[string]*dkimsign.Signer{}
	for _, algo := range []string{dkimsign.RSA, dkimsign.Ed25519} {
		sel := "gh-" + algo
		out := run(t, bin, "dkim", "keygen", "example.test", sel, "--type", algo, "--dir", dir)
		zp := dns.NewZoneParser(strings.NewReader(out), "", "")
		rr, ok := zp.Next()
		txt, isTXT := rr.(*dns.TXT)
		if !ok || !isTXT || zp.Err() != nil {
			t.Fatalf("keygen printed no TXT record (%v):\n%s", zp.Err(), out)
		}
		records[strings.TrimSuffix(txt.Hdr.Name, ".")] = strings.Join(txt.Txt, "")
		key, err := dkimsign.LoadKey(filepath.Join(dir, dkimsign.KeyFile("example.test", sel)))
		if err != nil {
			t.Fatal(err)
		}
		if signers[algo], err = dkimsign.NewSigner("example.test", sel, key, nil); err != nil {
			t.Fatal(err)
		}
	}
	recordsJSON, _ := json.Marshal(records)

	msg := "From: Alice <alice@example.test>\r\n" +
		"To: bob@example.net\r\n" +
		"Cc: carol@example.net\r\n" +
		"Subject: DKIM with a real verifier\r\n" +
		"Date: Tue, 03 Mar 2026 09:00:00 +0000\r\n" +
		"Message-ID: <e2e@example.test>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n" +
		"\r\n" +
		"Signed by Gatehouse,  verified by dkimpy.\r\n\r\n"
	for _, tc := range []struct {
		name    string
		signers []string
		edit    func(string) string
		want    string
	}{
		{"rsa", []string{dkimsign.RSA}, nil, "True"},
		{"ed25519", []string{dkimsign.Ed25519}, nil, "True"},
		{"rsa and ed25519", []string{dkimsign.RSA, dkimsign.Ed25519}, nil, "True True"},
		{"rsa, body altered", []string{dkimsign.RSA}, func(m string) string { return strings.Replace(m, "Signed", "Forged", 1) }, "False"},
		{"ed25519, body altered", []string{dkimsign.Ed25519}, func(m string) string { return strings.Replace(m, "Signed", "Forged", 1) }, "False"},
		{"rsa, From added", []string{dkimsign.RSA}, func(m string) string { return "From: ceo@example.test\r\n" + m }, "False"},
		{"ed25519, From added", []string{dkimsign.Ed25519}, func(m string) string { return "From: ceo@example.test\r\n" + m }, "False"},
		{"ed25519, header refolded (relaxed)", []string{dkimsign.Ed25519}, func(m string) string {
			return strings.Replace(m, "Subject: DKIM with", "Subject: DKIM\r\n\twith", 1)
		}, "True"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ss []*dkimsign.Signer
			for _, a := range tc.signers {
				ss = append(ss, signers[a])
			}
			h, err := dkimsign.Sign(strings.NewReader(msg), ss...)
			if err != nil {
				t.Fatal(err)
			}
			signed := h + msg
			if tc.edit != nil {
				// The signature fields stay on top, as a verifier reads them.
				signed = h + tc.edit(msg)
			}
			// Debian's interpreter, which python3-dkim installs into: a
			// python3 earlier in PATH (pyenv, a venv) would not have it.
			cmd := exec.Command("/usr/bin/python3", "-c", dkimpyVerify)
			cmd.Env = append(cmd.Environ(), "DKIM_RECORDS="+string(recordsJSON))
			cmd.Stdin = strings.NewReader(signed)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("dkimpy: %v (python3-dkim and python3-nacl installed? test/deps.sh)\n%s", err, stderr.String())
			}
			if got := strings.TrimSpace(stdout.String()); got != tc.want {
				t.Errorf("dkimpy says %q, want %q\n%s\n--- message ---\n%s", got, tc.want, stderr.String(), signed)
			}
		})
	}
}
