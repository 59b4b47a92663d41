package dkimsign

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"gatehouse/mailmsg"
)

// DefaultHeaders are the header fields a signature covers unless config
// says otherwise: RFC 6376 §5.4.1's recommended set, with From twice.
// Listing a field once more than the message has it ("oversigning") signs
// its absence: a From added in transit above the signed one breaks the
// signature instead of being shown to the reader. The other fields listed
// but absent from a message are signed as absent in the same way.
func DefaultHeaders() []string {
	return []string{
		"From", "From",
		"Reply-To", "Subject", "Date", "To", "Cc",
		"Resent-Date", "Resent-From", "Resent-To", "Resent-Cc",
		"In-Reply-To", "References",
		"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
		"Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	}
}

// A Signer signs mail from one domain with one key. It never changes
// after NewSigner and is safe for concurrent use: each message gets its
// own Writer.
type Signer struct {
	domain, selector string
	key              crypto.Signer
	headers          []string
}

// NewSigner is a signer for domain (the d= tag) with the key published at
// selector (s=). headers nil means DefaultHeaders; a list of its own must
// name From, and From is then oversigned if the list has it only once.
func NewSigner(domain, selector string, key crypto.Signer, headers []string) (*Signer, error) {
	domain = normalize(domain)
	if err := checkName(domain); err != nil {
		return nil, fmt.Errorf("dkim: domain %q: %w", domain, err)
	}
	selector = normalize(selector)
	if err := checkName(selector); err != nil {
		return nil, fmt.Errorf("dkim: selector %q: %w", selector, err)
	}
	if key == nil {
		return nil, errors.New("dkim: no key")
	}
	switch Algorithm(key.Public()) {
	case "":
		return nil, fmt.Errorf("dkim: a %T key: DKIM signs with RSA or Ed25519 only", key.Public())
	case RSA:
		if err := checkRSA(key.Public().(*rsa.PublicKey).N.BitLen()); err != nil {
			return nil, fmt.Errorf("dkim: %w", err)
		}
	}
	h, err := signedHeaders(headers)
	if err != nil {
		return nil, fmt.Errorf("dkim: domain %s: %w", domain, err)
	}
	return &Signer{domain: domain, selector: selector, key: key, headers: h}, nil
}

// signedHeaders checks a configured list of header fields and oversigns
// From.
func signedHeaders(headers []string) ([]string, error) {
	if headers == nil {
		return DefaultHeaders(), nil
	}
	from := 0
	out := make([]string, 0, len(headers)+1)
	for _, h := range headers {
		if err := checkFieldName(h); err != nil {
			return nil, fmt.Errorf("headers: %q: %w", h, err)
		}
		if strings.EqualFold(h, "DKIM-Signature") {
			return nil, errors.New("headers: DKIM-Signature cannot be signed by the signature it is")
		}
		if strings.EqualFold(h, "From") {
			from++
		}
		out = append(out, h)
	}
	switch from {
	case 0:
		return nil, errors.New("headers: From must be signed (RFC 6376 §5.4)")
	case 1:
		out = append(out, "From")
	}
	return out, nil
}

// Domain is the signing domain (d=), lower case.
func (s *Signer) Domain() string { return s.domain }

// Selector is the key's selector (s=).
func (s *Signer) Selector() string { return s.selector }

// Algorithm is the key's type: RSA or Ed25519.
func (s *Signer) Algorithm() string { return Algorithm(s.key.Public()) }

// Headers are the header fields signed (h=), a copy.
func (s *Signer) Headers() []string { return append([]string(nil), s.headers...) }

// Record is the DNS TXT record that publishes the signer's public key.
func (s *Signer) Record() (string, error) { return Record(s.domain, s.selector, s.key.Public()) }

func (s *Signer) options() *dkim.SignOptions {
	return &dkim.SignOptions{
		Domain:                 s.domain,
		Selector:               s.selector,
		Signer:                 s.key,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             s.headers,
	}
}

// A Writer signs one message as it is written: the caller copies the
// message (header, blank line, body; CRLF or LF line ends) into it while
// it also writes it to the queue, closes it, and puts Header() in front
// of the message. A message is held in memory only as far as its header.
// A Writer is for one goroutine.
type Writer struct {
	signers []*dkim.Signer
	header  string
	closed  bool
	err     error
}

// NewWriter starts signing a message with s.
func (s *Signer) NewWriter() (*Writer, error) { return NewWriter(s) }

// NewWriter starts signing a message with each of signers: one
// DKIM-Signature each, in the order given (a domain may sign with an RSA
// and an Ed25519 key, since not every verifier knows Ed25519). Each
// signature is computed in a goroutine of its own that ends at Close.
func NewWriter(signers ...*Signer) (*Writer, error) {
	if len(signers) == 0 {
		return nil, errors.New("dkim: no signer")
	}
	w := &Writer{}
	for _, s := range signers {
		ds, err := dkim.NewSigner(s.options())
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("dkim: %s (selector %s): %w", s.domain, s.selector, err)
		}
		w.signers = append(w.signers, ds)
	}
	return w, nil
}

// Write feeds message bytes to every signature.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("dkim: write after Close")
	}
	for _, s := range w.signers {
		if _, err := s.Write(p); err != nil {
			w.err = fmt.Errorf("dkim: %w", err)
			return 0, w.err
		}
	}
	return len(p), nil
}

// Close ends the message and computes the signatures. It must be called
// even after a failed Write or when the message is abandoned: it ends the
// signing goroutines.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	var b strings.Builder
	for _, s := range w.signers {
		err := s.Close()
		switch {
		case err != nil && w.err == nil:
			w.err = fmt.Errorf("dkim: %w", err)
		case err == nil && w.err == nil:
			b.WriteString(s.Signature())
		}
	}
	if w.err == nil {
		w.header = b.String()
	}
	return w.err
}

// Header is the DKIM-Signature header field (one per signer), folded,
// with CRLF line ends and a final CRLF, to put before the message's first
// line. It is "" until Close has returned nil.
func (w *Writer) Header() string { return w.header }

// Sign reads a whole message from r and returns its DKIM-Signature
// header field(s) (see Writer.Header).
func Sign(r io.Reader, signers ...*Signer) (string, error) {
	w, err := NewWriter(signers...)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return w.Header(), nil
}

// normalize is a DNS name as compared: lower case, no final dot.
// normalize is a domain as the DNS knows it (A-labels, lower case):
// d= and the keyring's lookups use that form, whichever the config or
// the From field wrote.
func normalize(name string) string {
	return mailmsg.ASCIIDomain(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// checkName accepts a DNS name of letters, digits, hyphens and
// underscores in labels (selectors are names too, RFC 6376 §3.1). It
// also keeps names usable in a file name (Keygen): no slashes, no "..".
func checkName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > 253 {
		return errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("a label is empty or longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a letter, digit, hyphen or underscore", c)
			}
		}
	}
	return nil
}

// checkFieldName accepts an RFC 5322 field name: printable ASCII but the
// colon.
func checkFieldName(name string) error {
	if name == "" {
		return errors.New("empty field name")
	}
	for _, c := range []byte(name) {
		if c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("%q is not allowed in a field name", c)
		}
	}
	return nil
}
