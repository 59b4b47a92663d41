package mailauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIMStatus is a signature's result, as Authentication-Results names it
// (RFC 8601 §2.7.1).
type DKIMStatus string

const (
	DKIMPass      DKIMStatus = "pass"      // the signature verifies
	DKIMFail      DKIMStatus = "fail"      // it does not: body or header altered, bad signature
	DKIMTempError DKIMStatus = "temperror" // the key could not be fetched now
	DKIMPermError DKIMStatus = "permerror" // malformed signature, no key, expired, From not signed
)

// DKIMResult is one signature's verification.
type DKIMResult struct {
	Domain     string // d=, the signing domain (SDID)
	Selector   string // s=
	Algorithm  string // a=, e.g. rsa-sha256, ed25519-sha256
	Identifier string // i=, or "@"+d=
	Status     DKIMStatus
	Reason     string // why it is not a pass; empty on pass
}

// DKIMOptions bound verification.
type DKIMOptions struct {
	MaxVerifications int           // signatures verified; later ones are ignored (5 when zero)
	LookupTimeout    time.Duration // per key lookup (5s when zero)
	MaxHeader        int           // bytes of header kept to name each signature's selector (1 MiB when zero)
}

// DKIMVerifier verifies a message's DKIM signatures while it streams
// through: write the message (header and body, CRLF line ends, as
// received) to it, Close it, then read Results. Memory stays bounded:
// go-msgauth hashes the body as it goes; only the header is kept.
type DKIMVerifier struct {
	pw   *io.PipeWriter
	done chan struct{}
	opts DKIMOptions

	// Set by the verifying goroutine before done is closed.
	verifs []*dkim.Verification
	err    error

	// The header as written so far, until its end is seen.
	mu        sync.Mutex
	head      []byte
	headDone  bool
	headLimit bool
}

// NewDKIMVerifier starts a verification; ctx bounds its key lookups and r
// answers them. The caller must Close it.
func NewDKIMVerifier(ctx context.Context, r Resolver, opts DKIMOptions) *DKIMVerifier {
	if opts.MaxVerifications <= 0 {
		opts.MaxVerifications = 5
	}
	if opts.LookupTimeout <= 0 {
		opts.LookupTimeout = 5 * time.Second
	}
	if opts.MaxHeader <= 0 {
		opts.MaxHeader = 1 << 20
	}
	pr, pw := io.Pipe()
	v := &DKIMVerifier{pw: pw, done: make(chan struct{}), opts: opts}
	go func() {
		defer close(v.done)
		v.verifs, v.err = dkim.VerifyWithOptions(pr, &dkim.VerifyOptions{
			LookupTXT:        txtFunc(ctx, r, opts.LookupTimeout),
			MaxVerifications: opts.MaxVerifications,
		})
		// go-msgauth may stop reading early (no signature, a hard
		// error): drain the rest so Write never blocks forever.
		io.Copy(io.Discard, pr)
	}()
	return v
}

// Write feeds the next part of the message.
func (v *DKIMVerifier) Write(p []byte) (int, error) {
	v.mu.Lock()
	if !v.headDone && !v.headLimit {
		// Scan only the new bytes (and the 3 before, for a CRLFCRLF
		// split across writes), so many small writes stay linear.
		from := max(len(v.head)-3, 0)
		v.head = append(v.head, p[:min(len(p), v.opts.MaxHeader+4-len(v.head))]...)
		if i := headerEnd(v.head[from:]); i >= 0 && (from == 0 || i > 0) {
			v.head, v.headDone = v.head[:from+i], true
		} else if len(v.head) > v.opts.MaxHeader {
			v.head, v.headLimit = nil, true
		}
	}
	v.mu.Unlock()
	return v.pw.Write(p)
}

// Close ends the message and waits for the verification to finish.
func (v *DKIMVerifier) Close() error {
	v.pw.Close()
	<-v.done
	return nil
}

// Results are the verifications of the first MaxVerifications signatures,
// in header order, after Close. The error is for a message go-msgauth
// could not read at all (a malformed header): no signature is then
// reported, and DMARC sees no DKIM pass.
func (v *DKIMVerifier) Results() ([]DKIMResult, error) {
	<-v.done
	if v.err != nil && !errors.Is(v.err, dkim.ErrTooManySignatures) {
		return nil, fmt.Errorf("dkim: %w", v.err)
	}
	v.mu.Lock()
	var sigs []map[string]string
	if !v.headLimit { // a message without body ends its header at EOF
		sigs = signatureTags(v.head)
	}
	v.mu.Unlock()
	out := make([]DKIMResult, 0, len(v.verifs))
	for i, ver := range v.verifs {
		r := DKIMResult{Domain: ver.Domain, Identifier: ver.Identifier, Status: DKIMPass}
		// go-msgauth reports signatures in header order; take the
		// selector and algorithm from the same field, if it agrees on d=.
		if i < len(sigs) && strings.EqualFold(stripWSP(sigs[i]["d"]), ver.Domain) {
			r.Selector, r.Algorithm = stripWSP(sigs[i]["s"]), stripWSP(sigs[i]["a"])
		}
		if ver.Err != nil {
			r.Reason = strings.TrimPrefix(ver.Err.Error(), "dkim: ")
			switch {
			case dkim.IsTempFail(ver.Err):
				r.Status = DKIMTempError
			case dkim.IsPermFail(ver.Err):
				r.Status = DKIMPermError
			default:
				r.Status = DKIMFail
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// VerifyDKIM verifies a whole message from r, for callers that have it at hand.
func VerifyDKIM(ctx context.Context, res Resolver, msg io.Reader, opts DKIMOptions) ([]DKIMResult, error) {
	v := NewDKIMVerifier(ctx, res, opts)
	if _, err := io.Copy(v, msg); err != nil {
		v.Close()
		return nil, fmt.Errorf("dkim: reading message: %w", err)
	}
	v.Close()
	return v.Results()
}

// headerEnd is the offset of the empty line that ends the header, or -1.
func headerEnd(b []byte) int {
	i, j := bytes.Index(b, []byte("\r\n\r\n")), bytes.Index(b, []byte("\n\n"))
	switch {
	case i >= 0 && (j < 0 || i < j):
		return i + 2
	case j >= 0:
		return j + 1
	}
	if bytes.HasPrefix(b, []byte("\r\n")) || bytes.HasPrefix(b, []byte("\n")) {
		return 0
	}
	return -1
}

// signatureTags parses the tag lists of the DKIM-Signature fields of a
// header block, in order.
func signatureTags(head []byte) []map[string]string {
	var out []map[string]string
	for _, f := range splitHeader(string(head)) {
		name, value, ok := strings.Cut(f, ":")
		if ok && strings.EqualFold(strings.TrimRight(name, " \t"), "DKIM-Signature") {
			out = append(out, parseTags(value))
		}
	}
	return out
}

// splitHeader splits a header block into fields, continuation lines
// joined to theirs (line ends kept out).
func splitHeader(head string) []string {
	var fields []string
	for line := range strings.Lines(head) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += line
			continue
		}
		fields = append(fields, line)
	}
	return fields
}

// parseTags reads a DKIM tag-list (RFC 6376 §3.2) leniently: the
// verification itself is go-msgauth's; this only names the signature.
func parseTags(s string) map[string]string {
	tags := map[string]string{}
	for _, spec := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(spec, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := tags[k]; !dup && k != "" {
			tags[k] = strings.TrimSpace(v)
		}
	}
	return tags
}

func stripWSP(s string) string {
	return strings.Map(func(c rune) rune {
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return -1
		}
		return c
	}, s)
}
