package mailauth

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"

	"gatehouse/mailmsg"
)

// SPF checks the RFC5321.MailFrom identity (RFC 7208 §2.4), or the HELO
// identity for the null sender, with blitiri.com.ar/go/spf over our
// resolver. The library keeps RFC 7208 §4.6.4's limits: 10 mechanisms
// and modifiers that cause DNS lookups, 2 void lookups, 10 MX and PTR
// names.
type SPF struct {
	Resolver Resolver
	Receiver string        // our host name, for Received-SPF's receiver= and comment
	Timeout  time.Duration // for the whole evaluation; 20s (RFC 7208 §4.6.4's minimum) when zero
}

// SPFResult is the outcome of one SPF check, with what Received-SPF and
// Authentication-Results report.
type SPFResult struct {
	Result   spf.Result // none, neutral, pass, fail, softfail, temperror, permerror
	Err      error      // the library's explanation (set even for some passes: "matched ip")
	ClientIP netip.Addr
	Helo     string
	MailFrom string // the envelope sender as given, "" for the null sender
	Identity string // "mailfrom", or "helo" for the null sender
	Domain   string // the domain checked: the sender's, or the HELO name
	Receiver string
}

// Check evaluates SPF for a client at ip that said helo and MAIL FROM:<mailFrom>.
func (s SPF) Check(ctx context.Context, ip netip.Addr, helo, mailFrom string) SPFResult {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res := SPFResult{ClientIP: ip.Unmap(), Helo: helo, MailFrom: mailFrom, Receiver: s.Receiver, Identity: "mailfrom"}
	sender := mailFrom
	_, domain, ok := strings.Cut(mailFrom, "@")
	if !ok || domain == "" {
		// The null sender: RFC 7208 §2.4 checks postmaster@<HELO name>.
		res.Identity, domain = "helo", helo
		sender = "postmaster@" + helo
	}
	// The DNS knows an internationalised domain by its A-labels.
	res.Domain = mailmsg.ASCIIDomain(strings.TrimSuffix(domain, "."))
	if res.Domain == "" {
		res.Result, res.Err = spf.None, errNoDomain
		return res
	}
	if at := strings.LastIndexByte(sender, '@'); at >= 0 {
		sender = sender[:at+1] + res.Domain
	}
	res.Result, res.Err = spf.CheckHostWithSender(net.IP(res.ClientIP.AsSlice()), helo, sender,
		spf.WithContext(ctx), spf.WithResolver(spfResolver{s.Resolver}))
	return res
}

var errNoDomain = spfError("no domain to check (empty HELO and null sender)")

type spfError string

func (e spfError) Error() string { return "spf: " + string(e) }

// ReceivedSPF is the value of a Received-SPF header field (RFC 7208 §9.1):
// the result, a comment, and the key-value pairs client-ip, envelope-from,
// helo, receiver, identity (and problem for errors).
func (r SPFResult) ReceivedSPF() string {
	var b strings.Builder
	b.WriteString(string(r.Result))
	b.WriteString(" (" + commentSafe(r.comment()) + ")")
	kv := func(k, v string) {
		b.WriteString(" " + k + "=" + kvValue(v) + ";")
	}
	kv("client-ip", r.ClientIP.String())
	kv("envelope-from", r.MailFrom)
	if r.Helo != "" {
		kv("helo", r.Helo)
	}
	if (r.Result == spf.TempError || r.Result == spf.PermError) && r.Err != nil {
		kv("problem", r.Err.Error())
	}
	if r.Receiver != "" {
		kv("receiver", r.Receiver)
	}
	kv("identity", r.Identity)
	return strings.TrimSuffix(b.String(), ";")
}

func (r SPFResult) comment() string {
	who := r.Receiver
	if who == "" {
		who = "receiver"
	}
	id := r.MailFrom
	if r.Identity == "helo" {
		id = r.Helo
	}
	switch r.Result {
	case spf.Pass:
		return who + ": domain of " + id + " designates " + r.ClientIP.String() + " as permitted sender"
	case spf.Fail:
		return who + ": domain of " + id + " does not designate " + r.ClientIP.String() + " as permitted sender"
	case spf.SoftFail:
		return who + ": domain of transitioning " + id + " does not designate " + r.ClientIP.String() + " as permitted sender"
	case spf.Neutral:
		return who + ": " + r.ClientIP.String() + " is neither permitted nor denied by domain of " + id
	case spf.None:
		return who + ": domain of " + id + " does not publish SPF"
	case spf.TempError:
		return who + ": temporary error checking " + r.Domain
	default:
		return who + ": permanent error in the SPF record of " + r.Domain
	}
}

// commentSafe keeps a comment from closing early or carrying control
// characters: the names in it come from the client.
func commentSafe(s string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c == '(' || c == ')' || c == '\\':
			return '_'
		case c < ' ' || c == 0x7f:
			return ' '
		}
		return c
	}, s)
}

// kvValue writes a key-value-pair value: a dot-atom as is, anything else
// as a quoted-string (RFC 5322 §3.2.4, RFC 7208 §9.1).
func kvValue(v string) string {
	if isDotAtom(v) {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range v {
		switch {
		case c == '"' || c == '\\':
			b.WriteString(`\` + string(c))
		case c < ' ' || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func isDotAtom(s string) bool {
	if s == "" || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", c)) {
			return false
		}
	}
	return true
}
