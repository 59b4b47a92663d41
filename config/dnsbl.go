package config

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// DNSBLSite is one DNSBL or DNSWL site, postscreen's dnsbl_sites entry
// "name[=filter][*weight]": a client whose reversed address is listed
// under Name with an answer that Filters accept adds Weight to its score.
// A negative weight makes the zone an allow list (a DNSWL).
type DNSBLSite struct {
	Name    string        // the zone queried, e.g. zen.spamhaus.org
	Filters []DNSBLFilter // answers that count; none: any 127.0.0.0/8 answer but the error codes
	Weight  int           // added to the score when listed; 1 in the config form when not given
}

// String is the config form, which ParseDNSBLSite reads back.
func (z DNSBLSite) String() string {
	var b strings.Builder
	b.WriteString(z.Name)
	for i, f := range z.Filters {
		if i == 0 {
			b.WriteByte('=')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(f.String())
	}
	if z.Weight != 1 {
		b.WriteString("*" + strconv.Itoa(z.Weight))
	}
	return b.String()
}

// DNSBLFilter is postscreen's answer pattern d.d.d.d, each octet a number or a
// bracketed list of numbers and ranges: 127.0.0.[2..11] or 127.0.[0..255].[1;3].
type DNSBLFilter [4][]OctetRange

// OctetRange is an inclusive range of one octet's values.
type OctetRange struct{ Lo, Hi uint8 }

// Match reports whether the IPv4 answer a fits the pattern.
func (f DNSBLFilter) Match(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	for i, set := range f {
		if !slices.ContainsFunc(set, func(r OctetRange) bool { return r.Lo <= b[i] && b[i] <= r.Hi }) {
			return false
		}
	}
	return true
}

func (f DNSBLFilter) String() string {
	parts := make([]string, 4)
	for i, set := range f {
		if len(set) == 1 && set[0].Lo == set[0].Hi {
			parts[i] = strconv.Itoa(int(set[0].Lo))
			continue
		}
		var rs []string
		for _, r := range set {
			if r.Lo == r.Hi {
				rs = append(rs, strconv.Itoa(int(r.Lo)))
			} else {
				rs = append(rs, fmt.Sprintf("%d..%d", r.Lo, r.Hi))
			}
		}
		parts[i] = "[" + strings.Join(rs, ";") + "]"
	}
	return strings.Join(parts, ".")
}

// ParseDNSBLSite reads the config form of a zone: postscreen's
// "zen.spamhaus.org=127.0.0.[2..11]*3", "list.dnswl.org=127.0.[0..255].[1..3]*-5"
// or just "bl.example". Several filters may be given, separated by commas
// (zone=127.0.0.2,127.0.0.[4..7]); the weight defaults to 1.
func ParseDNSBLSite(s string) (DNSBLSite, error) {
	z := DNSBLSite{Weight: 1}
	rest := strings.TrimSpace(s)
	if i := strings.LastIndexByte(rest, '*'); i >= 0 {
		w, err := strconv.Atoi(rest[i+1:])
		if err != nil || w < -1000 || w > 1000 {
			return DNSBLSite{}, fmt.Errorf("dnsbl zone %q: weight %q is not a number from -1000 to 1000", s, rest[i+1:])
		}
		z.Weight, rest = w, rest[:i]
	}
	name, filters, hasFilter := strings.Cut(rest, "=")
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if !isZoneName(name) {
		return DNSBLSite{}, fmt.Errorf("dnsbl zone %q: %q is not a domain name", s, name)
	}
	z.Name = name
	if hasFilter {
		for _, fs := range strings.Split(filters, ",") {
			f, err := parseFilter(fs)
			if err != nil {
				return DNSBLSite{}, fmt.Errorf("dnsbl zone %q: %w", s, err)
			}
			z.Filters = append(z.Filters, f)
		}
	}
	return z, nil
}

// isZoneName accepts a DNS name of letters, digits, '-' and '_' in
// labels of 1 to 63 characters; a zone name is nothing more.
func isZoneName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || strings.TrimLeft(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return true
}

func parseFilter(s string) (DNSBLFilter, error) {
	var f DNSBLFilter
	rest := s
	for i := range 4 {
		var oct string
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return f, fmt.Errorf("filter %q: unclosed [", s)
			}
			oct, rest = rest[:end+1], rest[end+1:]
		} else {
			end := strings.IndexByte(rest, '.')
			if end < 0 {
				end = len(rest)
			}
			oct, rest = rest[:end], rest[end:]
		}
		set, err := parseOctet(oct)
		if err != nil {
			return f, fmt.Errorf("filter %q: %w", s, err)
		}
		f[i] = set
		if i < 3 {
			if !strings.HasPrefix(rest, ".") {
				return f, fmt.Errorf("filter %q: want four octets d.d.d.d", s)
			}
			rest = rest[1:]
		}
	}
	if rest != "" {
		return f, fmt.Errorf("filter %q: trailing %q", s, rest)
	}
	return f, nil
}

// parseOctet reads "7", "[2..11]" or "[1;3;5..7]".
func parseOctet(s string) ([]OctetRange, error) {
	if !strings.HasPrefix(s, "[") {
		n, err := parseOctetValue(s)
		return []OctetRange{{Lo: n, Hi: n}}, err
	}
	body := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	var set []OctetRange
	for _, item := range strings.Split(body, ";") {
		lo, hi, isRange := strings.Cut(item, "..")
		a, err := parseOctetValue(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parseOctetValue(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("range %s..%s runs backwards", lo, hi)
			}
		}
		set = append(set, OctetRange{Lo: a, Hi: b})
	}
	return set, nil
}

func parseOctetValue(s string) (uint8, error) {
	if s == "" || len(s) > 3 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("octet %q is not a number from 0 to 255", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 255 {
		return 0, fmt.Errorf("octet %q is not a number from 0 to 255", s)
	}
	return uint8(n), nil
}

// UnmarshalYAML reads the config form (ParseDNSBLSite): a site that does
// not parse is an error at its line and column.
func (z *DNSBLSite) UnmarshalYAML(ctx context.Context, node ast.Node) error {
	sn, ok := node.(*ast.StringNode)
	if !ok {
		return invalid(ctx, node.GetToken(), "give a DNSBL site as a string like zen.spamhaus.org=127.0.0.[2..11]*3")
	}
	v, err := ParseDNSBLSite(sn.Value)
	if err != nil {
		return invalid(ctx, node.GetToken(), "%v", err)
	}
	*z = v
	return nil
}

// MarshalYAML writes the config form.
func (z DNSBLSite) MarshalYAML() (any, error) { return z.String(), nil }
