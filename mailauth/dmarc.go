package mailauth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/mail"
	"slices"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"gatehouse/mailmsg"
)

// DMARCStatus is the DMARC result as Authentication-Results names it
// (RFC 7489 §11.2).
type DMARCStatus string

const (
	DMARCPass      DMARCStatus = "pass"      // an aligned SPF or DKIM pass
	DMARCFail      DMARCStatus = "fail"      // a record, and no aligned pass
	DMARCNone      DMARCStatus = "none"      // no record: DMARC does not apply
	DMARCTempError DMARCStatus = "temperror" // the record could not be fetched now
	DMARCPermError DMARCStatus = "permerror" // a broken record, or a From field DMARC cannot use
)

// DMARC evaluates RFC 7489 for a message: the policy record of the
// RFC5322.From domain or of its organisational domain, and whether a
// passing SPF or DKIM identity aligns with it. go-msgauth parses the
// record; discovery, alignment and policy are here. No aggregate or
// failure reports are sent (rua=/ruf= are parsed and returned only).
type DMARC struct {
	Resolver Resolver
	Timeout  time.Duration              // for the record lookups; 10s when zero
	Rand     interface{ IntN(int) int } // pct= sampling; math/rand/v2 when nil (tests pass a seeded source)
}

// DMARCInput is what a DMARC check needs from the message and the other checks.
type DMARCInput struct {
	From []string     // the values of every From header field of the message
	SPF  SPFResult    // the SPF check of RFC5321.MailFrom (or HELO for the null sender)
	DKIM []DKIMResult // every verified signature
}

// DMARCResult is the outcome, with what Authentication-Results reports and
// what the policy asks for.
type DMARCResult struct {
	Status       DMARCStatus
	Disposition  dmarc.Policy  // what to do with the message: none, quarantine or reject
	Policy       dmarc.Policy  // the policy the domain asks for (p=, or sp= for a subdomain), before pct=
	FromDomain   string        // the RFC5322.From domain
	OrgDomain    string        // its organisational domain
	RecordDomain string        // where the record was found (FromDomain or OrgDomain)
	Record       *dmarc.Record // the parsed record, nil without one
	SPFAligned   bool
	DKIMAligned  bool
	Sampled      bool   // pct= selected this message for the policy (true when pct= is 100 or absent)
	Reason       string // a few words on why, for logs and the header's reason=
}

// maxFromDomains bounds the lookups for a From field with several domains.
const maxFromDomains = 5

// Check evaluates DMARC for one message.
//
// A From field DMARC cannot use (RFC 7489 §6.6.1) is a permerror: none at
// all, one that does not parse, one without a domain. Several From
// fields or addresses in one domain are evaluated as that domain. Several
// domains are a permerror too, but RFC 7489 §6.6.1 says to apply the
// strictest policy among the failing checks, so each domain is evaluated
// (up to 5) and the Disposition is the strictest: a second address cannot
// dodge its first domain's p=reject. Whether to refuse such messages
// outright (RFC 5322 §3.6 allows one From field) is the caller's call.
func (d DMARC) Check(ctx context.Context, in DMARCInput) DMARCResult {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	domains, err := FromDomains(in.From)
	if err != nil {
		return DMARCResult{Status: DMARCPermError, Disposition: dmarc.PolicyNone, Sampled: true, Reason: err.Error()}
	}
	if len(domains) == 1 {
		return d.check(ctx, domains[0], in)
	}
	var worst DMARCResult
	for i, dom := range domains {
		if i == maxFromDomains {
			break
		}
		r := d.check(ctx, dom, in)
		if i == 0 || severity(r.Disposition) > severity(worst.Disposition) {
			worst = r
		}
	}
	worst.Status = DMARCPermError
	worst.Reason = fmt.Sprintf("From has %d domains (%s); strictest policy applied", len(domains), strings.Join(domains, ", "))
	return worst
}

func severity(p dmarc.Policy) int {
	switch p {
	case dmarc.PolicyReject:
		return 2
	case dmarc.PolicyQuarantine:
		return 1
	}
	return 0
}

// check evaluates DMARC for one From domain.
func (d DMARC) check(ctx context.Context, from string, in DMARCInput) DMARCResult {
	res := DMARCResult{FromDomain: from, OrgDomain: OrgDomain(from), Disposition: dmarc.PolicyNone, Sampled: true}

	// Policy discovery (RFC 7489 §6.6.3): the From domain, then the
	// organisational domain.
	rec, status, why := d.lookup(ctx, from)
	res.RecordDomain = from
	if status == DMARCNone && res.OrgDomain != from {
		rec, status, why = d.lookup(ctx, res.OrgDomain)
		res.RecordDomain = res.OrgDomain
	}
	if status != "" {
		res.Status, res.Reason, res.RecordDomain = status, why, ""
		return res
	}
	res.Record = rec
	res.Policy = rec.Policy
	// sp= applies to subdomains of the domain queried, so only to a
	// record found at the organisational domain for a From below it.
	if res.RecordDomain != from && rec.SubdomainPolicy != "" {
		res.Policy = rec.SubdomainPolicy
	}

	if in.SPF.Result == spf.Pass && aligned(in.SPF.Domain, from, rec.SPFAlignment) {
		res.SPFAligned = true
	}
	for _, k := range in.DKIM {
		if k.Status == DKIMPass && aligned(k.Domain, from, rec.DKIMAlignment) {
			res.DKIMAligned = true
			break
		}
	}
	if res.SPFAligned || res.DKIMAligned {
		res.Status, res.Reason = DMARCPass, "aligned "+alignedWhat(res)
		return res
	}
	res.Status, res.Reason = DMARCFail, "no aligned SPF or DKIM pass"
	res.Disposition = res.Policy
	if rec.Percent != nil && *rec.Percent < 100 {
		res.Sampled = SamplePercent(*rec.Percent, d.Rand)
		if !res.Sampled {
			// RFC 7489 §6.6.4: a message pct= leaves out gets the next
			// policy down, not none.
			switch res.Policy {
			case dmarc.PolicyReject:
				res.Disposition = dmarc.PolicyQuarantine
			case dmarc.PolicyQuarantine:
				res.Disposition = dmarc.PolicyNone
			}
		}
	}
	return res
}

func alignedWhat(r DMARCResult) string {
	switch {
	case r.SPFAligned && r.DKIMAligned:
		return "SPF and DKIM"
	case r.SPFAligned:
		return "SPF"
	}
	return "DKIM"
}

// lookup fetches and parses the record at _dmarc.domain. status is ""
// when rec is usable, else DMARCNone, DMARCTempError or DMARCPermError.
func (d DMARC) lookup(ctx context.Context, domain string) (rec *dmarc.Record, status DMARCStatus, why string) {
	name := "_dmarc." + domain
	txts, err := lookupTXT(ctx, d.Resolver, name)
	if isNotFound(err) {
		return nil, DMARCNone, "no DMARC record"
	}
	if err != nil {
		return nil, DMARCTempError, "looking up " + name + ": " + err.Error()
	}
	// RFC 7489 §6.6.3: records not starting with v=DMARC1 are not DMARC
	// records; more than one means no DMARC processing at all.
	var recs []string
	for _, t := range txts {
		if isDMARCRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return nil, DMARCNone, "no DMARC record"
	case 1:
	default:
		return nil, DMARCNone, fmt.Sprintf("%d DMARC records at %s: none applies", len(recs), name)
	}
	rec, err = dmarc.Parse(recs[0])
	if err != nil {
		// RFC 7489 §6.6.3 would read a record with a bad p= but a good
		// rua= as p=none; we call any unparsable record a permerror,
		// which asks for no action either.
		return nil, DMARCPermError, fmt.Sprintf("record at %s: %v", name, err)
	}
	return rec, "", ""
}

// isDMARCRecord reports whether a TXT record starts with the tag v=DMARC1
// (white space allowed around the "=", RFC 7489 §6.4).
func isDMARCRecord(txt string) bool {
	first, _, _ := strings.Cut(txt, ";")
	k, v, ok := strings.Cut(first, "=")
	return ok && strings.TrimSpace(k) == "v" && strings.TrimSpace(v) == "DMARC1" &&
		!strings.HasPrefix(txt, " ") && !strings.HasPrefix(txt, "\t")
}

// SamplePercent reports whether a message falls within pct percent, drawn
// from rnd (math/rand/v2's source when nil): pct=0 never, pct>=100 always.
func SamplePercent(pct int, rnd interface{ IntN(int) int }) bool {
	switch {
	case pct >= 100:
		return true
	case pct <= 0:
		return false
	case rnd == nil:
		return rand.IntN(100) < pct
	}
	return rnd.IntN(100) < pct
}

// OrgDomain is the organisational domain of a domain (RFC 7489 §3.2): its
// registrable part by the Public Suffix List; a public suffix itself, or
// a name the list cannot place, is its own.
func OrgDomain(domain string) string {
	domain = normDomain(domain)
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// aligned compares an authenticated domain with the From domain: equal in
// strict mode, the same organisational domain in relaxed mode (RFC 7489 §3.1).
func aligned(authenticated, from string, mode dmarc.AlignmentMode) bool {
	a, f := normDomain(authenticated), normDomain(from)
	if a == "" || f == "" {
		return false
	}
	if a == f {
		return true
	}
	return mode != dmarc.AlignmentStrict && OrgDomain(a) == OrgDomain(f)
}

// normDomain is a domain as the DNS knows it: A-labels, lower case.
func normDomain(d string) string {
	return mailmsg.ASCIIDomain(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// FromDomains returns the distinct domains of the addresses in a
// message's From fields (the values of all of them, in order). It is an
// error when there is no From field, one does not parse as an address
// list, or an address has no domain.
func FromDomains(values []string) ([]string, error) {
	if len(values) == 0 {
		return nil, fmt.Errorf("no From field")
	}
	var out []string
	for _, v := range values {
		addrs, err := mail.ParseAddressList(v)
		if err != nil {
			return nil, fmt.Errorf("From field %q: %w", truncate(v, 100), err)
		}
		for _, a := range addrs {
			at := strings.LastIndexByte(a.Address, '@')
			dom := ""
			if at >= 0 {
				dom = normDomain(a.Address[at+1:])
			}
			if dom == "" || strings.HasPrefix(dom, "[") {
				return nil, fmt.Errorf("From address %q has no domain name", truncate(a.Address, 100))
			}
			if !slices.Contains(out, dom) {
				out = append(out, dom)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("From field without an address")
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
