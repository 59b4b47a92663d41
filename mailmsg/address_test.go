package mailmsg

import (
	"strings"
	"testing"
)

func TestParseAddressValid(t *testing.T) {
	tests := []struct {
		in            string
		local, domain string
		literal       bool
	}{
		{"user@example.com", "user", "example.com", false},
		{"User.Name+tag@Example.COM", "User.Name+tag", "example.com", false},
		{"user@example.com.", "user", "example.com", false},
		{"user@localhost", "user", "localhost", false},
		{"user@mx-1.example.com", "user", "mx-1.example.com", false},
		{"user@192.0.2.1", "user", "192.0.2.1", false}, // all-numeric TLD allowed
		{"user@[192.0.2.1]", "user", "[192.0.2.1]", true},
		{"user@[IPv6:2001:DB8::1]", "user", "[IPv6:2001:db8::1]", true},
		{"user@[ipv6:2001:db8::1]", "user", "[IPv6:2001:db8::1]", true},
		{"user@[IPv6:::ffff:192.0.2.1]", "user", "[IPv6:::ffff:192.0.2.1]", true},
		{"a@b@example.com", "a@b", "example.com", false}, // quoted local part, unquoted by go-smtp
		{`"q"\x@example.com`, `"q"\x`, "example.com", false},
		{strings.Repeat("l", 64) + "@example.com", strings.Repeat("l", 64), "example.com", false},
		{"u@" + strings.Repeat("a", 63) + ".example", "u", strings.Repeat("a", 63) + ".example", false},
		{"u@" + longDomain(255), "u", longDomain(255), false},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", tt.in, err)
			continue
		}
		if a.Local != tt.local || a.Domain != tt.domain {
			t.Errorf("ParseAddress(%q) = %+v, want local %q domain %q", tt.in, a, tt.local, tt.domain)
		}
		if a.IsLiteral() != tt.literal {
			t.Errorf("ParseAddress(%q).IsLiteral() = %v, want %v", tt.in, a.IsLiteral(), tt.literal)
		}
		if a.IsNull() {
			t.Errorf("ParseAddress(%q).IsNull() = true", tt.in)
		}
		if got := a.String(); got != tt.local+"@"+tt.domain {
			t.Errorf("ParseAddress(%q).String() = %q", tt.in, got)
		}
	}
}

// longDomain returns a valid host name of exactly n octets.
func longDomain(n int) string {
	var labels []string
	for n > 0 {
		l := min(n, 63)
		if n-l == 1 { // a lone dot would be left over
			l--
		}
		labels = append(labels, strings.Repeat("d", l))
		n -= l + 1
	}
	return strings.Join(labels, ".")
}

func TestParseAddressNull(t *testing.T) {
	a, err := ParseAddress("")
	if err != nil {
		t.Fatalf(`ParseAddress(""): %v`, err)
	}
	if !a.IsNull() || a.String() != "" || a.IsLiteral() || a.RelayTrick() != "" {
		t.Errorf(`ParseAddress("") = %+v, not the null address`, a)
	}
}

func TestParseAddressErrors(t *testing.T) {
	tests := []struct {
		in, want string // want: a piece of the error message
	}{
		{"user", "no '@'"},
		{"example.com", "no '@'"},
		{"@example.com", "empty local part"},
		{"user@", "empty domain"},
		{strings.Repeat("l", 65) + "@example.com", "local part longer than 64 octets"},
		{"u@" + longDomain(256), "longer than 255 octets"},
		{"us er@example.com", "space at offset 2"},
		{"user@example.com ", "space"},
		{"user\x00@example.com", "control character"},
		{"user\r\n@example.com", "control character"},
		{"user@exa\tmple.com", "control character"},
		{"user\x7f@example.com", "control character"},
		{"\xffser@example.com", "not UTF-8"},
		{"user\u0085x@example.com", "control character"},
		{"user@ex\u00a0mple.com", "internationalised"},
		{"user@-bücher.example", "internationalised"},
		{"user@" + strings.Repeat("ä", 64) + ".example", "label longer"},
		{"user@.", "no labels"},
		{"user@example..com", "empty label"},
		{"user@.example.com", "empty label"},
		{"user@example.com..", "empty label"},
		{"user@-example.com", "starts with '-'"},
		{"user@example-.com", "ends with '-'"},
		{"user@exa_mple.com", `contains '_'`},
		{"user@" + strings.Repeat("a", 64) + ".example", "label longer than 63 characters"},
		{"user@[192.0.2.1", "no closing ']'"},
		{"user@[192.0.2.1].", "no closing ']'"},
		{"user@[192.0.2.256]", "not an IPv4 address"},
		{"user@[192.0.2]", "not an IPv4 address"},
		{"user@[010.0.2.1]", "not an IPv4 address"},
		{"user@[]", "not an IPv4 address"},
		{"user@[2001:db8::1]", "needs the IPv6: tag"},
		{"user@[x-tag:foo]", "other tags are not supported"},
		{"user@[IPv6:192.0.2.1]", "IPv4 address behind the IPv6: tag"},
		{"user@[IPv6:2001:db8::g]", "not an IPv6 address"},
		{"user@[IPv6:fe80::1%eth0]", "zone not allowed"},
		{"user@example.com]", "contains ']'"},
		{"user@[" + strings.Repeat("1", 300) + "]", "longer than 255 octets"},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if err == nil {
			t.Errorf("ParseAddress(%q) = %+v, want error containing %q", tt.in, a, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseAddress(%q) error %q, want it to contain %q", tt.in, err, tt.want)
		}
		if !strings.HasPrefix(err.Error(), "mailmsg: ") {
			t.Errorf("ParseAddress(%q) error %q lacks the package prefix", tt.in, err)
		}
	}
}

func TestRelayTrick(t *testing.T) {
	tests := []struct {
		in    string
		trick bool
	}{
		{"user@managed.example", false},
		{"first.last+tag@managed.example", false},
		{"user%other.example@managed.example", true},
		{"other.example!user@managed.example", true},
		{"user@other.example@managed.example", true},
		{"a:b@x.example", true},
		{"a,b@x.example", true},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if err != nil {
			t.Fatalf("ParseAddress(%q): %v", tt.in, err)
		}
		if got := a.RelayTrick(); (got != "") != tt.trick {
			t.Errorf("ParseAddress(%q).RelayTrick() = %q, want trick %v", tt.in, got, tt.trick)
		}
	}
	// The domain of a relay trick is the last one: that is where the relay
	// would deliver, and what its policy must judge.
	a, _ := ParseAddress("user@other.example@managed.example")
	if a.Domain != "managed.example" || a.Local != "user@other.example" {
		t.Errorf("split at the last '@': got %+v", a)
	}
}

func TestInDomain(t *testing.T) {
	tests := []struct {
		addr, domain string
		sub, want    bool
	}{
		{"u@example.com", "example.com", false, true},
		{"u@example.com", "EXAMPLE.com", false, true},
		{"u@example.com", "example.com.", false, true},
		{"u@EXAMPLE.COM", "example.com", true, true},
		{"u@x.example.com", "example.com", false, false},
		{"u@x.example.com", "example.com", true, true},
		{"u@a.b.example.com", "Example.Com", true, true},
		{"u@badexample.com", "example.com", true, false},
		{"u@example.com", "x.example.com", true, false},
		{"u@example.com.evil", "example.com", true, false},
		{"u@example.com", "", true, false},
		{"u@example.com", ".", true, false},
		{"u@example.com", ".com", true, false}, // no empty label match
		{"u@[192.0.2.1]", "[192.0.2.1]", false, true},
		{"u@[192.0.2.1]", "2.1]", true, false},
		{"u@[IPv6:2001:db8::1]", "[ipv6:2001:DB8::1]", true, true},
		{"", "example.com", true, false},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.addr)
		if err != nil {
			t.Fatalf("ParseAddress(%q): %v", tt.addr, err)
		}
		if got := a.InDomain(tt.domain, tt.sub); got != tt.want {
			t.Errorf("%q.InDomain(%q, %v) = %v, want %v", tt.addr, tt.domain, tt.sub, got, tt.want)
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"", "user@example.com", "User@Example.COM.", "a@b@c", "u@[192.0.2.1]",
		"u@[IPv6:2001:db8::1]", "u@[IPv6:fe80::1%eth0]", "u%v@x", "@", "u@.", "u@-a",
		"jörg@Bücher.Example", "u@xn--bcher-kva.example", "\u7528@\u4f8b\u5b50.\u5e7f\u544a", "u@ＢＣ.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		b, err := ParseAddress(a.String())
		if err != nil {
			t.Fatalf("ParseAddress(%q) = %+v, whose String %q does not parse: %v", s, a, a.String(), err)
		}
		if b != a {
			t.Fatalf("ParseAddress(%q) = %+v, but its String %q parses to %+v", s, a, a.String(), b)
		}
		if len(a.Local) > maxLocalPart || len(a.Domain) > maxDomain {
			t.Fatalf("ParseAddress(%q) = %+v, over the length limits", s, a)
		}
		if !a.IsNull() && !a.InDomain(a.Domain, false) {
			t.Fatalf("%+v is not in its own domain", a)
		}
		// The other spelling is the same address, and plain SMTP can
		// carry it whenever the local part is ASCII.
		if asc, ok := a.ASCII(); ok != !a.NeedsSMTPUTF8() {
			t.Fatalf("%+v: ASCII() ok=%v, NeedsSMTPUTF8=%v", a, ok, a.NeedsSMTPUTF8())
		} else if ok {
			c, err := ParseAddress(asc.String())
			if err != nil || !c.IsASCII() || c.Key() != a.Key() || !a.IsNull() && !c.InDomain(a.Domain, false) {
				t.Fatalf("%+v in A-labels is %q: parses to %+v (%v), key %q, want %q", a, asc.String(), c, err, c.Key(), a.Key())
			}
		}
	})
}

func TestPath(t *testing.T) {
	for _, c := range []struct {
		a    Address
		want string
	}{
		{Address{}, ""},
		{Address{"a.b+tag", "x.test"}, "a.b+tag@x.test"},
		{Address{"a>b", "x.test"}, `"a>b"@x.test`},
		{Address{`a"b`, "x.test"}, `"a\"b"@x.test`},
		{Address{`a\b`, "x.test"}, `"a\\b"@x.test`},
		{Address{"a b", "x.test"}, `"a b"@x.test`},
		{Address{"x@y", "x.test"}, `"x@y"@x.test`},
		{Address{".a", "x.test"}, `".a"@x.test`},
		{Address{"a..b", "x.test"}, `"a..b"@x.test`},
		{Address{"a", "[192.0.2.1]"}, "a@[192.0.2.1]"},
	} {
		if got := c.a.Path(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.a, got, c.want)
		}
	}
}

func TestParseAddressInternational(t *testing.T) {
	for _, tc := range []struct {
		in, local, domain, ascii, key string
		needs                         bool
	}{
		{"jörg@outside.example", "jörg", "outside.example", "", "jörg@outside.example", true},
		{"user@Bücher.Example", "user", "bücher.example", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example", false},
		{"user@xn--bcher-kva.example", "user", "xn--bcher-kva.example", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example", false},
		{"Müller@ＢÜCHER.example.", "Müller", "bücher.example", "", "müller@xn--bcher-kva.example", true},
		{"用户@例子.广告", "用户", "例子.广告", "", "用户@xn--fsqu00a.xn--4rr70v", true},
	} {
		a, err := ParseAddress(tc.in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", tc.in, err)
			continue
		}
		if a.Local != tc.local || a.Domain != tc.domain {
			t.Errorf("ParseAddress(%q) = %q @ %q, want %q @ %q", tc.in, a.Local, a.Domain, tc.local, tc.domain)
		}
		if a.IsASCII() != (a.Local+a.Domain == strings.ToValidUTF8(a.Local+a.Domain, "") && !strings.ContainsFunc(a.Local+a.Domain, func(r rune) bool { return r >= 0x80 })) {
			t.Errorf("%q: IsASCII = %v", tc.in, a.IsASCII())
		}
		if a.NeedsSMTPUTF8() != tc.needs {
			t.Errorf("%q: NeedsSMTPUTF8 = %v, want %v", tc.in, a.NeedsSMTPUTF8(), tc.needs)
		}
		asc, ok := a.ASCII()
		if ok != (tc.ascii != "") || ok && asc.String() != tc.ascii {
			t.Errorf("%q: ASCII() = %q, %v; want %q", tc.in, asc.String(), ok, tc.ascii)
		}
		if a.Key() != tc.key {
			t.Errorf("%q: Key() = %q, want %q", tc.in, a.Key(), tc.key)
		}
	}
}

func TestInDomainInternational(t *testing.T) {
	u, _ := ParseAddress("a@mail.bücher.example")
	x, _ := ParseAddress("a@mail.xn--bcher-kva.example")
	for _, a := range []Address{u, x} {
		for _, d := range []string{"bücher.example", "xn--bcher-kva.example", "BÜCHER.example.", "XN--BCHER-KVA.EXAMPLE"} {
			if !a.InDomain(d, true) {
				t.Errorf("%s not in %s", a, d)
			}
			if a.InDomain(d, false) {
				t.Errorf("%s in %s without subdomains", a, d)
			}
		}
		if a.InDomain("bucher.example", true) || a.InDomain("ücher.example", true) {
			t.Errorf("%s matched a different domain", a)
		}
	}
}
