package mtasts

import (
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		in   string
		id   string // "" : an error
		desc string
	}{
		{"v=STSv1; id=20160831085700Z;", "20160831085700Z", "RFC example"},
		{"v=STSv1;id=abc", "abc", "no space, no trailing ;"},
		{"v=STSv1 ;\tid=abc ; ", "abc", "white space around the delimiters"},
		{"v=STSv1; id=abc; foo=bar", "abc", "extension ignored"},
		{"v=STSv1; foo-1.x_y=ba:r; id=abc", "abc", "extension first"},
		{"v=STSv1; id=first; id=second", "first", "the first id counts"},
		{"v=STSv1; id=" + strings.Repeat("a", 32), strings.Repeat("a", 32), "id of 32"},
		{"v=STSv1; id=" + strings.Repeat("a", 33), "", "id of 33"},
		{"v=STSv1; id=ab-c", "", "id with a hyphen"},
		{"v=STSv1; id=", "", "empty id"},
		{"v=STSv1;", "", "no id"},
		{"v=STSv1", "", "version only"},
		{"v=STSv1; id=abc;;", "", "empty field"},
		{"v=STSv2; id=abc", "", "other version"},
		{"v=stsv1; id=abc", "", "version is case-sensitive"},
		{" v=STSv1; id=abc", "", "leading space"},
		{"id=abc; v=STSv1", "", "version not first"},
		{"v=STSv1; ID=abc", "", "ID is not id"},
		{"v=STSv1; id=abc; foo=", "", "empty extension value"},
		{"v=STSv1; id=abc; foo=a b", "", "space in an extension value"},
		{"v=STSv1; id=abc; _foo=x", "", "extension name must start alphanumeric"},
	} {
		rec, err := ParseRecord(tc.in)
		if tc.id == "" {
			if err == nil {
				t.Errorf("%s: %q: got id %q, want an error", tc.desc, tc.in, rec.ID)
			}
			continue
		}
		if err != nil || rec.ID != tc.id {
			t.Errorf("%s: %q: got %q, %v; want %q", tc.desc, tc.in, rec.ID, err, tc.id)
		}
	}
}

func TestSelectRecord(t *testing.T) {
	for _, tc := range []struct {
		in []string
		id string
	}{
		{[]string{"v=spf1 -all", "v=STSv1; id=a1"}, "a1"},
		{[]string{"v=STSv1; id=a1", "v=STSv1; id=a2"}, ""}, // two: none applies
		{[]string{"v=STSv10; id=a1"}, ""},
		{nil, ""},
		{[]string{"v=STSv1 ; id=a1"}, "a1"},
	} {
		rec, err := SelectRecord(tc.in)
		if (err == nil) != (tc.id != "") || rec.ID != tc.id {
			t.Errorf("%q: got %q, %v; want %q", tc.in, rec.ID, err, tc.id)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		in     string
		mode   Mode // "" : an error
		mx     []string
		maxAge time.Duration
	}{
		{"RFC example, CRLF", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			Enforce, []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, 604800 * time.Second},
		{"LF, no final line end, any order", "mx: MX.Example.COM\nmax_age: 86400\nmode: testing\nversion: STSv1",
			Testing, []string{"mx.example.com"}, 86400 * time.Second},
		{"none without mx", "version: STSv1\nmode: none\nmax_age: 0\n", None, nil, 0},
		{"unknown keys ignored", "version: STSv1\nmode: testing\nfoo_bar: some value here\nmx: a.example\nmax_age: 1\n", Testing, []string{"a.example"}, time.Second},
		{"first of repeated fields", "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 10\nmax_age: 20\n", Enforce, []string{"a.example"}, 10 * time.Second},
		{"white space around values", "version:STSv1 \nmode:\tenforce\t\nmx:  a.example \nmax_age: 5\n", Enforce, []string{"a.example"}, 5 * time.Second},
		{"max_age cut to a year", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n", Enforce, []string{"a.example"}, MaxMaxAge},
		{"empty lines skipped", "version: STSv1\n\nmode: enforce\r\n\r\nmx: a.example\nmax_age: 5\n\n", Enforce, []string{"a.example"}, 5 * time.Second},

		{"no version", "mode: enforce\nmx: a.example\nmax_age: 5\n", "", nil, 0},
		{"other version", "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 5\n", "", nil, 0},
		{"no mode", "version: STSv1\nmx: a.example\nmax_age: 5\n", "", nil, 0},
		{"unknown mode", "version: STSv1\nmode: report\nmx: a.example\nmax_age: 5\n", "", nil, 0},
		{"mode is case-sensitive", "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 5\n", "", nil, 0},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.example\n", "", nil, 0},
		{"max_age of 11 digits", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 10000000000\n", "", nil, 0},
		{"negative max_age", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -5\n", "", nil, 0},
		{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 5\n", "", nil, 0},
		{"two-label wildcard", "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 5\n", "", nil, 0},
		{"wildcard inside", "version: STSv1\nmode: enforce\nmx: a*.example\nmax_age: 5\n", "", nil, 0},
		{"mx with trailing dot", "version: STSv1\nmode: enforce\nmx: a.example.\nmax_age: 5\n", "", nil, 0},
		{"mx with underscore", "version: STSv1\nmode: enforce\nmx: a_b.example\nmax_age: 5\n", "", nil, 0},
		{"leading space on a key", "version: STSv1\n mode: enforce\nmx: a.example\nmax_age: 5\n", "", nil, 0},
		{"line without colon", "version: STSv1\nmode: enforce\nmx a.example\nmax_age: 5\n", "", nil, 0},
		{"control character in an extension", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 5\nx: a\x01b\n", "", nil, 0},
		{"not UTF-8", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 5\nx: \xff\n", "", nil, 0},
		{"too long", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 5\nx: " + strings.Repeat("a", MaxPolicySize) + "\n", "", nil, 0},
	} {
		p, err := ParsePolicy([]byte(tc.in))
		if tc.mode == "" {
			if err == nil {
				t.Errorf("%s: got %+v, want an error", tc.desc, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.desc, err)
			continue
		}
		if p.Mode != tc.mode || p.MaxAge != tc.maxAge || strings.Join(p.MX, ",") != strings.Join(tc.mx, ",") {
			t.Errorf("%s: got mode %s mx %v max_age %v; want %s %v %v", tc.desc, p.Mode, p.MX, p.MaxAge, tc.mode, tc.mx, tc.maxAge)
		}
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: Enforce, MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com":  true,
		"MAIL.Example.Com.": true,
		"mx.example.com":    false,
		"a.example.net":     true,
		"A.EXAMPLE.NET.":    true,
		"example.net":       false,
		"a.b.example.net":   false,
		".example.net":      false,
		"aexample.net":      false,
		"":                  false,
		"*.example.net":     true, // a literal "*" label is one label; no DNS name has it
	} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestLines(t *testing.T) {
	p, err := ParsePolicy([]byte("version: STSv1\r\nmode: testing\r\nmx: a.example\r\n\r\nmax_age: 86400\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"version: STSv1", "mode: testing", "mx: a.example", "max_age: 86400"}
	if strings.Join(p.Lines(), "|") != strings.Join(want, "|") {
		t.Errorf("Lines() = %q, want %q", p.Lines(), want)
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=STSv1; id=20160831085700Z;", "v=STSv1;id=a;x=y", "v=STSv1 ; id=a ;", "v=STSv1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseRecord(s)
		if err != nil {
			return
		}
		if !isIDValue(rec.ID) {
			t.Fatalf("%q: accepted id %q", s, rec.ID)
		}
		if !strings.HasPrefix(s, "v=STSv1") {
			t.Fatalf("%q accepted without v=STSv1 first", s)
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
		"version: STSv1\nmode: none\nmax_age: 0",
		"version: STSv1\nmode: testing\nmx: a.example\nmax_age: 99999999999\nx: y z\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge {
			t.Fatalf("max_age %v out of range", p.MaxAge)
		}
		if p.Mode != Enforce && p.Mode != Testing && p.Mode != None {
			t.Fatalf("mode %q", p.Mode)
		}
		if p.Mode != None && len(p.MX) == 0 {
			t.Fatal("no mx")
		}
		for _, m := range p.MX {
			if !isDomain(strings.TrimPrefix(m, "*.")) || m != strings.ToLower(m) {
				t.Fatalf("mx pattern %q", m)
			}
			// A pattern matches a host it names (the wildcard with a label).
			host := m
			if rest, ok := strings.CutPrefix(m, "*."); ok {
				host = "x." + rest
			}
			if !p.Match(host) {
				t.Fatalf("%q does not match its own pattern %q", host, m)
			}
		}
		// Reparsing the text gives the same policy.
		q, err := ParsePolicy([]byte(p.Text))
		if err != nil || q.Mode != p.Mode || q.MaxAge != p.MaxAge || len(q.MX) != len(p.MX) {
			t.Fatalf("reparse: %v", err)
		}
	})
}
