package mailmsg

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestXtext(t *testing.T) {
	for _, tc := range []struct{ dec, enc string }{
		{"", ""},
		{"Bob@Example.COM", "Bob@Example.COM"},
		{"Bob+list@Example.COM", "Bob+2Blist@Example.COM"},
		{"a=b c\\d", "a+3Db+20c\\d"},
		{"\x00\x7f\xff", "+00+7F+FF"},
		{"müller", "m+C3+BCller"}, // octets, not characters
	} {
		if got := EncodeXtext(tc.dec); got != tc.enc {
			t.Errorf("EncodeXtext(%q) = %q, want %q", tc.dec, got, tc.enc)
		}
		if got, err := DecodeXtext(tc.enc); err != nil || got != tc.dec {
			t.Errorf("DecodeXtext(%q) = %q, %v, want %q", tc.enc, got, err, tc.dec)
		}
	}
	// A hexchar for an octet that needs none is the encoder's choice (RFC 3461 4).
	if got, err := DecodeXtext("+41b"); err != nil || got != "Ab" {
		t.Errorf(`DecodeXtext("+41b") = %q, %v`, got, err)
	}
	for _, bad := range []string{
		"a+2b",      // lower-case hex
		"a+2",       // incomplete
		"a+",        // incomplete
		"a+G0",      // not hex
		"a=b",       // '=' must be a hexchar
		"a b",       // space
		"a\tb",      // control
		"a\x7fb",    // DEL
		"m\xc3\xbc", // 8-bit
	} {
		if got, err := DecodeXtext(bad); err == nil {
			t.Errorf("DecodeXtext(%q) = %q, want an error", bad, got)
		}
	}
}

func TestUTF8AddrXtext(t *testing.T) {
	for _, tc := range []struct{ dec, xtext, unitext string }{
		{"bob@example.com", "bob@example.com", "bob@example.com"},
		{"müller@bücher.example", `m\x{FC}ller@b\x{FC}cher.example`, "müller@bücher.example"},
		{"用户@例子.广告", `\x{7528}\x{6237}@\x{4F8B}\x{5B50}.\x{5E7F}\x{544A}`, "用户@例子.广告"},
		{"a+b=c\\d e@x", `a\x{2B}b\x{3D}c\x{5C}d\x{20}e@x`, `a\x{2B}b\x{3D}c\x{5C}d\x{20}e@x`},
		{"\U0001F600@x", `\x{1F600}@x`, "\U0001F600@x"},
		{"\U0010FFFF@x", `\x{10FFFF}@x`, "\U0010FFFF@x"},
	} {
		if got := EncodeUTF8AddrXtext(tc.dec); got != tc.xtext {
			t.Errorf("EncodeUTF8AddrXtext(%q) = %q, want %q", tc.dec, got, tc.xtext)
		}
		if got := EncodeUTF8AddrUnitext(tc.dec); got != tc.unitext {
			t.Errorf("EncodeUTF8AddrUnitext(%q) = %q, want %q", tc.dec, got, tc.unitext)
		}
		for _, enc := range []string{tc.xtext, tc.unitext} {
			if got, err := DecodeUTF8AddrXtext(enc); err != nil || got != tc.dec {
				t.Errorf("DecodeUTF8AddrXtext(%q) = %q, %v, want %q", enc, got, err, tc.dec)
			}
		}
	}
	// RFC 5234 2.3: ABNF's quoted letters match either case.
	if got, err := DecodeUTF8AddrXtext(`m\x{fc}ller`); err != nil || got != "müller" {
		t.Errorf(`lower-case hex: %q, %v`, got, err)
	}
	for _, bad := range []string{
		`\x{41}bc`,     // 'A' needs no encoding (go-smtp accepts it)
		`\x{7E}`,       // '~' neither
		`\x{0FC}`,      // leading zero
		`\x{00FC}`,     // leading zeros
		`\x{C}`,        // one digit
		`\x{00}`,       // NUL
		`\x{D800}`,     // surrogate
		`\x{DFFF}`,     // surrogate
		`\x{110000}`,   // beyond Unicode
		`\x{1000000}`,  // seven digits
		`\x{}`,         // empty
		`\x{FG}`,       // not hex
		`\x{FC`,        // unterminated
		`\y{FC}`,       // not \x
		`a\`,           // lone backslash
		"a+b",          // '+' must be \x{2B}
		"a=b",          // '=' must be \x{3D}
		"a b",          // space
		"a\tb",         // control
		"m\xfcller",    // Latin-1, not UTF-8
		"\xed\xa0\x80", // an encoded surrogate
		"\xc0\xaf",     // overlong
	} {
		if got, err := DecodeUTF8AddrXtext(bad); err == nil {
			t.Errorf("DecodeUTF8AddrXtext(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseORCPT(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want OrigRcpt
	}{
		// RFC 3461 4.2's example, with the '+' a hexchar.
		{"rfc822;Bob+2Blist@Example.COM", OrigRcpt{"rfc822", "Bob+list@Example.COM"}},
		{"RFC822;bob@example.com", OrigRcpt{"rfc822", "bob@example.com"}},
		{"rfc822;+22a+20b+22@example.com", OrigRcpt{"rfc822", `"a b"@example.com`}},
		{`utf-8;m\x{FC}ller@b\x{FC}cher.example`, OrigRcpt{"utf-8", "müller@bücher.example"}},
		{"UTF-8;müller@bücher.example", OrigRcpt{"utf-8", "müller@bücher.example"}},
		{"utf-8;bob@example.com", OrigRcpt{"utf-8", "bob@example.com"}},
		{"rfc822;" + strings.Repeat("a", 493), OrigRcpt{"rfc822", strings.Repeat("a", 493)}}, // 500 octets
	} {
		got, err := ParseORCPT(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseORCPT(%q) = %+v, %v, want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"",
		"rfc822",
		"rfc822;",
		";bob@example.com",
		"x400;c=us;a=x",
		"rfc822 ;bob@example.com",
		"rfc822;bob+2b@example.com",          // lower-case hexchar
		"rfc822;m+C3+BCller@example.com",     // non-ASCII in rfc822
		"rfc822;bob+0D+0ABcc:x@example.com",  // CR LF
		"rfc822;bob+00@example.com",          // NUL
		`utf-8;bob\x{0A}@example.com`,        // LF
		`utf-8;bob\x{85}@example.com`,        // C1 control (NEL)
		"utf-8;m\xfcller@example.com",        // invalid UTF-8
		`utf-8;\x{41}@example.com`,           // needless \x{}
		`utf-8;\x{D83D}@example.com`,         // surrogate
		"rfc822;" + strings.Repeat("a", 494), // 501 octets
	} {
		if got, err := ParseORCPT(bad); err == nil {
			t.Errorf("ParseORCPT(%q) = %+v, want an error", bad, got)
		} else if !strings.HasPrefix(err.Error(), "mailmsg: ") {
			t.Errorf("ParseORCPT(%q): error %q lacks context", bad, err)
		}
	}
}

func TestOrigRcptParam(t *testing.T) {
	for _, tc := range []struct {
		o             OrigRcpt
		ascii, utf8in string
	}{
		{OrigRcpt{"rfc822", "Bob+list@Example.COM"}, "rfc822;Bob+2Blist@Example.COM", "rfc822;Bob+2Blist@Example.COM"},
		{OrigRcpt{"utf-8", "müller@bücher.example"}, `utf-8;m\x{FC}ller@b\x{FC}cher.example`, "utf-8;müller@bücher.example"},
	} {
		if got, err := tc.o.Param(false); err != nil || got != tc.ascii {
			t.Errorf("%+v.Param(false) = %q, %v, want %q", tc.o, got, err, tc.ascii)
		}
		if got, err := tc.o.Param(true); err != nil || got != tc.utf8in {
			t.Errorf("%+v.Param(true) = %q, %v, want %q", tc.o, got, err, tc.utf8in)
		}
	}
	for _, bad := range []OrigRcpt{
		{},
		{"x400", "c=us"},
		{"RFC822", "bob@example.com"}, // Type is lower-case by contract
		{"rfc822", "müller@example.com"},
		{"rfc822", "bob\r\n@example.com"},
		{"utf-8", "m\xfcller@example.com"},
		{"utf-8", "bob\n@example.com"},
		{"utf-8", ""},
	} {
		if got, err := bad.Param(false); err == nil {
			t.Errorf("%+v.Param(false) = %q, want an error", bad, got)
		}
	}
	// 100 × "ü" is 200 octets as unitext but 700 as xtext: too long only for
	// a next hop without SMTPUTF8.
	long := OrigRcpt{"utf-8", strings.Repeat("ü", 100) + "@x"}
	if _, err := long.Param(true); err != nil {
		t.Errorf("Param(true) of a 200-octet address: %v", err)
	}
	if _, err := long.Param(false); !errors.Is(err, errORCPTTooLong) {
		t.Errorf("Param(false) of a 700-octet xtext: %v, want errORCPTTooLong", err)
	}
}

func TestOrigRcptField(t *testing.T) {
	for _, tc := range []struct {
		o             OrigRcpt
		global, ascii string
	}{
		{OrigRcpt{"rfc822", "bob@example.com"}, "rfc822;bob@example.com", "rfc822;bob@example.com"},
		{OrigRcpt{"utf-8", "müller@bücher.example"}, "utf-8;müller@bücher.example", `utf-8;m\x{FC}ller@b\x{FC}cher.example`},
		{OrigRcpt{"rfc822", "bob\r\nX: 1@example.com"}, "rfc822;bob X: 1@example.com", "rfc822;bob X: 1@example.com"},
		{OrigRcpt{"utf-8", "m\xfcller\r\n@x"}, "utf-8;m\uFFFDller @x", `utf-8;m\x{FFFD}ller\x{20}@x`},
		{OrigRcpt{"x400", "c=us"}, "", ""},
		{OrigRcpt{"rfc822", "\r\n "}, "", ""},
		{OrigRcpt{}, "", ""},
	} {
		if got := tc.o.Field(true); got != tc.global {
			t.Errorf("%+v.Field(true) = %q, want %q", tc.o, got, tc.global)
		}
		if got := tc.o.Field(false); got != tc.ascii {
			t.Errorf("%+v.Field(false) = %q, want %q", tc.o, got, tc.ascii)
		}
	}
}

// FuzzXtext: decoding never panics, and encoding is lossless and 7bit.
func FuzzXtext(f *testing.F) {
	for _, s := range []string{"", "Bob+2Blist@Example.COM", "a=b c", "\x00\xff", "+2", "+2b", "müller"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		DecodeXtext(s)
		enc := EncodeXtext(s)
		for i := 0; i < len(enc); i++ {
			if enc[i] < '!' || enc[i] > '~' {
				t.Fatalf("EncodeXtext(%q) = %q holds %q", s, enc, enc[i])
			}
		}
		if dec, err := DecodeXtext(enc); err != nil || dec != s {
			t.Fatalf("DecodeXtext(EncodeXtext(%q)) = %q, %v", s, dec, err)
		}
		// The UTF-8 address forms round-trip for valid UTF-8 without
		// NUL (which HEXPOINT cannot spell).
		if utf8.ValidString(s) && !strings.Contains(s, "\x00") {
			for _, enc := range []string{EncodeUTF8AddrXtext(s), EncodeUTF8AddrUnitext(s)} {
				if dec, err := DecodeUTF8AddrXtext(enc); err != nil || dec != s {
					t.Fatalf("DecodeUTF8AddrXtext(%q) = %q, %v, want %q", enc, dec, err, s)
				}
			}
			for _, c := range []byte(EncodeUTF8AddrXtext(s)) {
				if c < '!' || c > '~' {
					t.Fatalf("EncodeUTF8AddrXtext(%q) holds %q", s, c)
				}
			}
		}
	})
}

// FuzzORCPT: parsing never panics, what parses is passed on to a next hop
// unchanged in both forms, and the DSN field cannot break a line.
func FuzzORCPT(f *testing.F) {
	for _, s := range []string{
		"rfc822;Bob+2Blist@Example.COM", `utf-8;m\x{FC}ller@b\x{FC}cher.example`, "utf-8;müller@bücher.example",
		`utf-8;a\x{20}b\x{5C}@x`, "rfc822;+0D+0A", `utf-8;\x{D800}`, "x400;a", "utf-8;" + strings.Repeat("ü", 200),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		o, err := ParseORCPT(v)
		if err != nil {
			return
		}
		for _, smtputf8 := range []bool{false, true} {
			p, err := o.Param(smtputf8)
			if errors.Is(err, errORCPTTooLong) {
				continue // an xtext-encoded UTF-8 address can outgrow the limit
			}
			if err != nil {
				t.Fatalf("ParseORCPT(%q) = %+v, but Param(%v): %v", v, o, smtputf8, err)
			}
			if back, err := ParseORCPT(p); err != nil || back != o {
				t.Fatalf("ParseORCPT(%q) = %+v, Param(%v) = %q, parsed back: %+v, %v", v, o, smtputf8, p, back, err)
			}
		}
		for _, global := range []bool{false, true} {
			if fv := o.Field(global); strings.ContainsAny(fv, "\r\n") || !utf8.ValidString(fv) {
				t.Fatalf("%+v.Field(%v) = %q", o, global, fv)
			}
		}
	})
}
