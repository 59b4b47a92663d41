package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// Record is a parsed _smtp._tls TXT record (RFC 8460 3): where the policy
// domain wants its reports.
type Record struct {
	RUA []string // the rua URIs as published, mailto: and https: only
}

// Mailto lists the addresses of the record's mailto: URIs.
func (r Record) Mailto() []string {
	var out []string
	for _, u := range r.RUA {
		if a, ok := mailtoAddress(u); ok {
			out = append(out, a)
		}
	}
	return out
}

// HTTPS lists the record's https: URIs (reports POSTed there, RFC 8460
// 5.4).
func (r Record) HTTPS() []string {
	var out []string
	for _, u := range r.RUA {
		if strings.HasPrefix(strings.ToLower(u), "https:") {
			out = append(out, u)
		}
	}
	return out
}

// TXTResolver looks TXT records up (each one's strings joined);
// mtasts.DNS is one, over the appliance's resolver.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// ErrNoRecord: the domain publishes no (single, valid) TLSRPT record, so
// it gets no report.
var ErrNoRecord = errors.New("no TLSRPT record")

// LookupRecord finds the TLSRPT record of a policy domain at
// _smtp._tls.<domain>.
func LookupRecord(ctx context.Context, r TXTResolver, domain string) (Record, error) {
	txts, err := r.LookupTXT(ctx, "_smtp._tls."+strings.TrimSuffix(domain, "."))
	if err != nil {
		return Record{}, fmt.Errorf("TLSRPT record of %s: %w", domain, err)
	}
	return SelectRecord(txts)
}

// SelectRecord picks the TLSRPT record out of the TXT records at
// _smtp._tls.<domain>: those that are not TLSRPT records are discarded,
// and anything but exactly one left means no reports (RFC 8460 3).
func SelectRecord(txts []string) (Record, error) {
	var recs []string
	for _, t := range txts {
		if rest, ok := strings.CutPrefix(t, "v=TLSRPTv1"); ok && (rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t') {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return Record{}, ErrNoRecord
	case 1:
		return ParseRecord(recs[0])
	}
	return Record{}, fmt.Errorf("%w: %d v=TLSRPTv1 records", ErrNoRecord, len(recs))
}

// ParseRecord parses a TLSRPT record (RFC 8460 3):
//
//	v=TLSRPTv1; rua=mailto:reports@example.com,https://reporting.example.com/v1/tlsrpt
//
// "v=TLSRPTv1" first, fields separated by ";" with optional white space,
// one optional trailing ";", rua required (the first counts), its URIs
// separated by "," with optional white space; extension fields of the
// RFC's syntax ignored. URIs other than mailto: and https: are left out;
// a record with none left is an error.
func ParseRecord(txt string) (Record, error) {
	fields := strings.Split(txt, ";")
	if strings.TrimRight(fields[0], " \t") != "v=TLSRPTv1" {
		return Record{}, fmt.Errorf("TLSRPT record %q: does not start with v=TLSRPTv1", clip(txt))
	}
	var rec Record
	seenRUA := false
	for i, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-2 && i > 0 {
			break // the optional trailing delimiter
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok || !isExtName(k) {
			return Record{}, fmt.Errorf("TLSRPT record %q: malformed field %q", clip(txt), clip(f))
		}
		if k != "rua" {
			if !isExtValue(v) {
				return Record{}, fmt.Errorf("TLSRPT record %q: malformed value of %q", clip(txt), k)
			}
			continue
		}
		if seenRUA {
			continue
		}
		seenRUA = true
		for _, u := range strings.Split(v, ",") {
			u = strings.Trim(u, " \t")
			ok, err := checkURI(u)
			if err != nil {
				return Record{}, fmt.Errorf("TLSRPT record %q: %w", clip(txt), err)
			}
			if ok {
				rec.RUA = append(rec.RUA, u)
			}
		}
	}
	if !seenRUA {
		return Record{}, fmt.Errorf("TLSRPT record %q: no rua", clip(txt))
	}
	if len(rec.RUA) == 0 {
		return Record{}, fmt.Errorf("TLSRPT record %q: no mailto: or https: rua", clip(txt))
	}
	return rec, nil
}

// checkURI says whether u is a rua URI we can send to (mailto: with an
// address, https: with a host); an error for what is no URI at all.
func checkURI(u string) (bool, error) {
	if u == "" {
		return false, errors.New("empty rua URI")
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c >= 0x7f {
			return false, fmt.Errorf("rua URI %q: control character or space", clip(u))
		}
	}
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" {
		return false, fmt.Errorf("rua URI %q: not a URI", clip(u))
	}
	switch strings.ToLower(p.Scheme) {
	case "mailto":
		_, ok := mailtoAddress(u)
		return ok, nil
	case "https":
		return p.Host != "" && p.User == nil, nil
	}
	return false, nil
}

// mailtoAddress is the one address of a mailto: URI (RFC 6068), its
// header fields (?subject=) left out.
func mailtoAddress(u string) (string, bool) {
	p, err := url.Parse(u)
	if err != nil || !strings.EqualFold(p.Scheme, "mailto") || p.Opaque == "" {
		return "", false
	}
	a, err := url.PathUnescape(p.Opaque)
	if err != nil || strings.ContainsAny(a, ",<>\r\n") {
		return "", false
	}
	addr, err := mail.ParseAddress(a)
	if err != nil || addr.Name != "" || addr.Address != a {
		return "", false
	}
	return a, true
}

// isExtName: ALPHA/DIGIT *31(ALPHA / DIGIT / "_" / "-" / ".").
func isExtName(s string) bool {
	if s == "" || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// isExtValue: 1*(%x21-3A / %x3C / %x3E-7E).
func isExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '=' || c == ';' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
