package config

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// scalarOrNull is scalar, with "" for a key written without a value (the
// default applies, as for a key left out).
func scalarOrNull(node ast.Node) (string, *posError) {
	if _, null := node.(*ast.NullNode); null {
		return "", nil
	}
	return scalar(node)
}

// TLSLevel is how much TLS outbound delivery insists on, as Postfix names
// the levels. The zero value is "not given": the default applies.
type TLSLevel uint8

// The TLS levels, weakest first; dane stands apart (see TLSDane).
const (
	TLSNone    TLSLevel = iota + 1 // plain text only
	TLSMay                         // STARTTLS when offered, any certificate; plain text when TLS fails
	TLSEncrypt                     // TLS required, any certificate
	TLSVerify                      // TLS required, a certificate a trusted CA signed
	TLSSecure                      // verify, and the certificate names the next hop
	// TLSDane is Postfix's "dane": per server, DANE (RFC 7672) when its
	// TLSA records are DNSSEC-authenticated (TLS then mandatory, and
	// verified when a record is usable); else, for direct MX delivery,
	// the domain's MTA-STS policy; else may. It is not above secure in
	// strength: without DNSSEC it is as weak as may (see transportsec.go).
	TLSDane
)

var tlsLevelNames = [...]string{TLSNone: "none", TLSMay: "may", TLSEncrypt: "encrypt", TLSVerify: "verify", TLSSecure: "secure", TLSDane: "dane"}

// tlsLevelList names the levels for error messages.
const tlsLevelList = "none, may, encrypt, verify, secure, dane"

// String is the level's name as the config writes it.
func (l TLSLevel) String() string {
	if int(l) < len(tlsLevelNames) {
		return tlsLevelNames[l]
	}
	return fmt.Sprintf("TLSLevel(%d)", uint8(l))
}

// UnmarshalYAML decodes none, may, encrypt, verify, secure or dane.
func (l *TLSLevel) UnmarshalYAML(ctx context.Context, node ast.Node) error {
	s, perr := scalarOrNull(node)
	if perr != nil {
		return perr
	}
	*l = 0
	if s == "" {
		return nil
	}
	for v, name := range tlsLevelNames {
		if name != "" && name == s {
			*l = TLSLevel(v)
			return nil
		}
	}
	return invalid(ctx, node.GetToken(), "%q is not a TLS level ("+tlsLevelList+")", s)
}

// MarshalYAML writes the level's name.
func (l TLSLevel) MarshalYAML() (any, error) { return l.String(), nil }

// MarshalJSON writes the level's name.
func (l TLSLevel) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// IMAPTLS is how the relay reaches the internal IMAP server to check
// logins: never in clear.
type IMAPTLS uint8

// The ways to the IMAP server. The zero value is "not given".
const (
	IMAPImplicit IMAPTLS = iota + 1 // TLS from the first byte (port 993)
	IMAPStartTLS                    // STARTTLS before LOGIN (port 143)
)

// String is the name as the config writes it.
func (t IMAPTLS) String() string {
	switch t {
	case IMAPImplicit:
		return "implicit"
	case IMAPStartTLS:
		return "starttls"
	}
	return ""
}

// UnmarshalYAML decodes implicit or starttls.
func (t *IMAPTLS) UnmarshalYAML(ctx context.Context, node ast.Node) error {
	s, perr := scalarOrNull(node)
	if perr != nil {
		return perr
	}
	switch s {
	case "":
		*t = 0
	case "implicit":
		*t = IMAPImplicit
	case "starttls":
		*t = IMAPStartTLS
	default:
		*t = 0
		return invalid(ctx, node.GetToken(), "%q: implicit or starttls (a password never crosses the network in clear)", s)
	}
	return nil
}

// MarshalYAML writes the name.
func (t IMAPTLS) MarshalYAML() (any, error) { return t.String(), nil }

// MarshalJSON writes the name.
func (t IMAPTLS) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// RouteKind says how a route delivers.
type RouteKind uint8

// The kinds of route. The zero value is "not given".
const (
	RouteMX        RouteKind = iota + 1 // direct, to the recipient domain's MX hosts
	RouteConnector                      // through a connector of smtp.connectors
)

// Route is where the config sends mail outside the managed domains
// (default_route, transport, rules): "mx", or a connector's name.
type Route struct {
	Kind RouteKind
	Name string // the connector's, for RouteConnector
}

// MXRoute is direct delivery.
var MXRoute = Route{Kind: RouteMX}

// String is the route as the config writes it.
func (r Route) String() string {
	if r.Kind == RouteMX {
		return "mx"
	}
	return r.Name
}

// UnmarshalYAML decodes "mx" or a connector name (that the connector
// exists is validation's to check).
func (r *Route) UnmarshalYAML(node ast.Node) error {
	s, perr := scalarOrNull(node)
	if perr != nil {
		return perr
	}
	switch s {
	case "":
		*r = Route{}
	case "mx":
		*r = MXRoute
	default:
		*r = Route{Kind: RouteConnector, Name: s}
	}
	return nil
}

// MarshalYAML writes the route as the config does.
func (r Route) MarshalYAML() (any, error) { return r.String(), nil }

// MarshalJSON writes the route as the config does.
func (r Route) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// NextHop is where a route delivers: a host and port, and whether MX
// records are looked up (Postfix: [host] means no MX lookup).
type NextHop struct {
	Host  string
	Port  uint16
	NoMX  bool
	Given string // as written; "" when not given
}

// String is the next hop as Postfix writes it.
func (h NextHop) String() string { return h.Given }

// ParseNextHop reads "[host]:port", "[host]", "host:port" or "host".
func ParseNextHop(s string) (NextHop, error) {
	h := NextHop{Given: s, Port: 25}
	rest := s
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return h, fmt.Errorf("%q: missing ']'", s)
		}
		h.Host, h.NoMX, rest = rest[1:end], true, rest[end+1:]
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[:i], ":") {
		h.Host, rest = rest[:i], rest[i:]
	} else {
		h.Host, rest = rest, ""
	}
	if rest != "" {
		p, ok := strings.CutPrefix(rest, ":")
		n, err := strconv.ParseUint(p, 10, 16)
		if !ok || err != nil || n == 0 {
			return h, fmt.Errorf("%q: the port after the host must be 1 to 65535", s)
		}
		h.Port = uint16(n)
	}
	if _, err := netip.ParseAddr(h.Host); err == nil {
		h.NoMX = true
	} else if !validHostname(h.Host) {
		return h, fmt.Errorf("%q is not a next hop like \"[10.0.0.5]:25\", \"[mail.example.com]\" or \"example.com\"", s)
	}
	return h, nil
}

// UnmarshalYAML decodes a next hop; one that is not is a problem at its
// position, and decoding goes on.
func (h *NextHop) UnmarshalYAML(ctx context.Context, node ast.Node) error {
	s, perr := scalarOrNull(node)
	if perr != nil {
		return perr
	}
	if s == "" {
		*h = NextHop{}
		return nil
	}
	nh, err := ParseNextHop(s)
	*h = nh
	if err != nil {
		return invalid(ctx, node.GetToken(), "%v", err)
	}
	return nil
}

// MarshalYAML writes the next hop as given.
func (h NextHop) MarshalYAML() (any, error) { return h.Given, nil }

// MarshalJSON writes the next hop as given.
func (h NextHop) MarshalJSON() ([]byte, error) { return json.Marshal(h.Given) }
