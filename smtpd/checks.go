package smtpd

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
	"github.com/emersion/go-smtp"

	"gatehouse/config"
	"gatehouse/dkimsign"
	"gatehouse/mailauth"
	"gatehouse/mailmsg"
)

// Checks are the running checks of mail from outside (smtp.checks) and
// the outbound DKIM keys (smtp.dkim_signing), built by the relay from its
// config and replaced on reload; sessions read them per message.
type Checks struct {
	conf    *config.MailChecks // nil: no checks
	dnsbl   *mailauth.DNSBL    // nil: no DNSBL
	spf     mailauth.SPF
	dmarc   mailauth.DMARC
	res     mailauth.Resolver
	keyring *dkimsign.Keyring // nil: nothing signed
}

// NewChecks builds the checks of c with the appliance's resolver r; keys
// are the loaded DKIM keys (nil for none). The DNSBL of prev, with its
// cache and counters, carries over when its sites and threshold are the
// same (a reload for something else).
func NewChecks(c *config.SMTP, r mailauth.Resolver, keys *dkimsign.Keyring, prev *Checks) *Checks {
	k := &Checks{conf: c.Checks, res: r, keyring: keys}
	if c.Checks == nil {
		return k
	}
	if b := c.Checks.DNSBL; b != nil {
		if prev != nil && prev.dnsbl != nil && reflect.DeepEqual(prev.conf.DNSBL.Sites, b.Sites) && prev.conf.DNSBL.Threshold == b.Threshold {
			k.dnsbl = prev.dnsbl
		} else {
			k.dnsbl = mailauth.NewDNSBL(r, b.Sites, b.Threshold, 0)
		}
	}
	k.spf = mailauth.SPF{Resolver: r, Receiver: c.Hostname}
	k.dmarc = mailauth.DMARC{Resolver: r}
	return k
}

// DNSBLStats are the DNSBL's counters, for the relay's status.
func (k *Checks) DNSBLStats() (mailauth.DNSBLStats, bool) {
	if k == nil || k.dnsbl == nil {
		return mailauth.DNSBLStats{}, false
	}
	return k.dnsbl.Stats(), true
}

// applies says whether mail from this client is checked: from outside, on
// port 25, not skipped by smtp.checks.skip_for.
func (k *Checks) applies(p *Policy, c Client) bool {
	if k == nil || k.conf == nil || c.Listener != "smtp" {
		return false
	}
	reason, _ := p.relayReason(c)
	switch {
	case reason == "trusted":
		return !k.conf.Skips("trusted")
	case reason == "authenticated" || reason == "pop-before-smtp":
		return !k.conf.Skips("authenticated")
	case strings.HasPrefix(reason, "connector:"):
		return !k.conf.Skips("connectors")
	}
	return true
}

// checkDNSBL is the DNSBL at the greeting: a client scoring at the
// threshold is refused with the zone named, or tagged.
func (s *session) checkDNSBL(k *Checks, p *Policy) error {
	if k == nil || k.dnsbl == nil || !k.applies(p, s.client) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := k.dnsbl.Check(ctx, s.client.Addr)
	for _, err := range r.Errors {
		s.log.Warn("dnsbl: lookup failed (counted neither listed nor fatal)", "err", err)
	}
	if !r.Blocked() {
		return nil
	}
	hit, _ := r.Worst()
	if k.conf.DNSBL.Action == "tag" {
		s.dnsblTag = fmt.Sprintf("score %d, listed by %s", r.Score, hit.Zone.Name)
		s.log.Info("dnsbl: listed; tagged", "score", r.Score, "zone", hit.Zone.Name)
		return nil
	}
	s.log.Warn("dnsbl: refused", "score", r.Score, "zone", hit.Zone.Name)
	s.srv.count.rejected.Add(1)
	return smtpErr(554, smtp.EnhancedCode{5, 7, 1}, fmt.Sprintf("Service unavailable; client [%s] blocked using %s", s.client.Addr, hit.Zone.Name))
}

// checkSPF is SPF at MAIL FROM.
func (s *session) checkSPF(k *Checks, p *Policy, from mailmsg.Address) *smtp.SMTPError {
	s.spf = nil
	if !k.applies(p, s.client) || k.conf.SPF.Action == "off" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := k.spf.Check(ctx, s.client.Addr, s.helo, from.String())
	s.spf = &r
	if r.Result == spf.Fail && k.conf.SPF.Action == "reject" {
		s.log.Warn("spf: fail; refused", "from", from.String(), "domain", r.Domain)
		return smtpErr(550, smtp.EnhancedCode{5, 7, 23}, fmt.Sprintf("SPF of %s does not allow %s to send its mail", r.Domain, s.client.Addr))
	}
	return nil
}

// inspection is what DATA learns of a message from outside: its DKIM
// signatures, read as the message streams to the queue.
type inspection struct {
	k      *Checks
	verify *mailauth.DKIMVerifier
	cancel context.CancelFunc
}

func (s *session) inspect(k *Checks, p *Policy) *inspection {
	if !k.applies(p, s.client) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	return &inspection{k: k, cancel: cancel,
		verify: mailauth.NewDKIMVerifier(ctx, k.res, mailauth.DKIMOptions{MaxVerifications: k.conf.DKIM.MaxSignatures})}
}

// stripOwn removes Authentication-Results fields from outside that claim
// to be ours (RFC 8601 section 5): only ours may say what we checked.
func (in *inspection) stripOwn(h mailmsg.Header, raw []byte) []byte {
	if in == nil {
		return raw
	}
	if own := mailauth.OwnAuthResults(h.Values("Authentication-Results"), in.k.conf.AuthServID); len(own) > 0 {
		return h.WithoutNth(raw, "Authentication-Results", own)
	}
	return raw
}

// abort ends a verification the message never finished (idempotent).
func (in *inspection) abort() {
	in.cancel()
	in.verify.Close()
}

func (in *inspection) writer() io.Writer {
	if in == nil {
		return io.Discard
	}
	return in.verify
}

// authVerdict is the message's authentication: the header fields to put in
// front of it, and what DMARC asks for.
type authVerdict struct {
	prepend    string
	reject     *smtp.SMTPError
	quarantine string
}

// finish ends the inspection once the message is read: DKIM's results,
// DMARC, and the header fields.
func (in *inspection) finish(s *session, h mailmsg.Header) authVerdict {
	defer in.cancel()
	in.verify.Close()
	var v authVerdict
	sigs, err := in.verify.Results()
	if err != nil {
		s.log.Warn("dkim: the message could not be read for verification", "err", err)
	}
	ar := mailauth.AuthResults{SPF: s.spf, DKIMChecked: err == nil, DKIM: sigs}
	c := in.k.conf
	if !c.DMARC.Off {
		spfRes := mailauth.SPFResult{}
		if s.spf != nil {
			spfRes = *s.spf
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		d := in.k.dmarc.Check(ctx, mailauth.DMARCInput{From: h.Values("From"), SPF: spfRes, DKIM: sigs})
		cancel()
		ar.DMARC = &d
		v.reject, v.quarantine = s.dmarcAction(c, &d)
	}
	var b strings.Builder
	if s.spf != nil {
		b.WriteString(fold("Received-SPF: " + s.spf.ReceivedSPF()))
	}
	b.WriteString(fold("Authentication-Results: " + ar.Format(c.AuthServID)))
	if s.dnsblTag != "" {
		b.WriteString(fold("X-Gatehouse-DNSBL: " + s.dnsblTag))
	}
	v.prepend = b.String()
	return v
}

// dmarcAction maps a DMARC failure to what smtp.checks.dmarc says.
func (s *session) dmarcAction(c *config.MailChecks, d *mailauth.DMARCResult) (*smtp.SMTPError, string) {
	if d.Status != mailauth.DMARCFail {
		return nil, ""
	}
	action := ""
	switch d.Disposition {
	case dmarc.PolicyReject:
		action = c.DMARC.Reject
	case dmarc.PolicyQuarantine:
		action = c.DMARC.Quarantine
	}
	why := fmt.Sprintf("DMARC policy of %s: %s (%s)", d.FromDomain, d.Disposition, d.Reason)
	s.log.Warn("dmarc: fail", "domain", d.FromDomain, "policy", string(d.Disposition), "action", action, "reason", d.Reason)
	switch action {
	case "reject":
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, fmt.Sprintf("Message rejected: the DMARC policy of %s", d.FromDomain)), ""
	case "quarantine", "hold":
		return nil, why
	}
	return nil, ""
}

// fold writes a header field with CRLF, folding long values at spaces
// (RFC 5322 section 2.2.3) so that no line passes 78 characters where it
// can be helped.
func fold(field string) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Split(field, " ") {
		if i > 0 {
			if line+1+len(word) > 78 {
				b.WriteString("\r\n\t")
				line = 1
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(word)
		line += len(word)
	}
	b.WriteString("\r\n")
	return b.String()
}

// signer is the DKIM signature of a message from the inside, made as it
// streams to the queue; nil when its From domain has no key.
func (s *session) signer(k *Checks, p *Policy, h mailmsg.Header) *dkimsign.Writer {
	if k == nil || k.keyring == nil || !p.fromInside(s.client, h) {
		return nil
	}
	doms, err := mailauth.FromDomains(h.Values("From"))
	if err != nil || len(doms) != 1 {
		return nil // no single From domain: nothing to sign as
	}
	signers := k.keyring.For(doms[0])
	if len(signers) == 0 {
		return nil
	}
	w, err := dkimsign.NewWriter(signers...)
	if err != nil {
		s.log.Error("dkim: cannot sign", "domain", doms[0], "err", err)
		return nil
	}
	return w
}
