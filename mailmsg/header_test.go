package mailmsg

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func readHeaderString(s string, max int) (Header, []byte, error) {
	return ReadHeader(bufio.NewReader(strings.NewReader(s)), max)
}

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		header string // the part of in that ReadHeader must consume
		fields [][2]string
	}{{
		name:   "simple",
		in:     "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n",
		header: "From: a@example.com\r\nSubject: hi\r\n\r\n",
		fields: [][2]string{{"From", "a@example.com"}, {"Subject", "hi"}},
	}, {
		name:   "folding",
		in:     "Subject: a\r\n  long\r\n\tsubject \r\nTo: x\r\n\r\n",
		header: "Subject: a\r\n  long\r\n\tsubject \r\nTo: x\r\n\r\n",
		fields: [][2]string{{"Subject", "a  long\tsubject"}, {"To", "x"}},
	}, {
		name:   "name as written, no space after colon, empty value",
		in:     "x-MIXED-case:value\r\nX-Empty:\r\n\r\n",
		header: "x-MIXED-case:value\r\nX-Empty:\r\n\r\n",
		fields: [][2]string{{"x-MIXED-case", "value"}, {"X-Empty", ""}},
	}, {
		name:   "colon in value",
		in:     "Date: Tue, 04 Mar 2025 05:06:07 +0000\r\n\r\n",
		header: "Date: Tue, 04 Mar 2025 05:06:07 +0000\r\n\r\n",
		fields: [][2]string{{"Date", "Tue, 04 Mar 2025 05:06:07 +0000"}},
	}, {
		name:   "no body, EOF after the last line",
		in:     "Subject: hi\r\nTo: x\r\n",
		header: "Subject: hi\r\nTo: x\r\n",
		fields: [][2]string{{"Subject", "hi"}, {"To", "x"}},
	}, {
		name:   "no body, last line without line end",
		in:     "Subject: hi\r\nTo: x",
		header: "Subject: hi\r\nTo: x",
		fields: [][2]string{{"Subject", "hi"}, {"To", "x"}},
	}, {
		name:   "bare LF line ends",
		in:     "Subject: a\n b\nTo: x\n\nbody\n",
		header: "Subject: a\n b\nTo: x\n\n",
		fields: [][2]string{{"Subject", "a b"}, {"To", "x"}},
	}, {
		name:   "mixed line ends",
		in:     "Subject: a\r\n b\nTo: x\r\n\nbody",
		header: "Subject: a\r\n b\nTo: x\r\n\n",
		fields: [][2]string{{"Subject", "a b"}, {"To", "x"}},
	}, {
		name:   "empty header",
		in:     "\r\nbody\r\n",
		header: "\r\n",
	}, {
		name: "empty input",
	}, {
		name:   "8-bit value",
		in:     "Subject: caf\xc3\xa9\r\n\r\n",
		header: "Subject: caf\xc3\xa9\r\n\r\n",
		fields: [][2]string{{"Subject", "caf\xc3\xa9"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tt.in))
			h, raw, err := ReadHeader(r, 1000)
			if err != nil {
				t.Fatalf("ReadHeader: %v", err)
			}
			if string(raw) != tt.header {
				t.Errorf("raw = %q, want %q", raw, tt.header)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tt.in[len(tt.header):] {
				t.Errorf("left in reader %q, want %q", rest, tt.in[len(tt.header):])
			}
			var got [][2]string
			for _, f := range h.fields {
				got = append(got, [2]string{f.name, f.value})
			}
			if !slices.Equal(got, tt.fields) {
				t.Errorf("fields = %q, want %q", got, tt.fields)
			}
			if h.Len() != len(tt.fields) {
				t.Errorf("Len() = %d, want %d", h.Len(), len(tt.fields))
			}
			checkFieldRaw(t, h, raw)
		})
	}
}

// checkFieldRaw checks that the fields' raw bytes, in order, make up the
// header block, apart from the empty line that may end it.
func checkFieldRaw(t *testing.T, h Header, raw []byte) {
	t.Helper()
	var all []byte
	for _, f := range h.fields {
		all = append(all, f.raw...)
	}
	if !bytes.HasPrefix(raw, all) {
		t.Fatalf("fields' raw bytes %q are not a prefix of header %q", all, raw)
	}
	if rest := raw[len(all):]; len(rest) != 0 && !isEmptyLine(rest) {
		t.Fatalf("fields' raw bytes %q leave %q of header %q", all, rest, raw)
	}
}

func TestHeaderAccessors(t *testing.T) {
	in := "Received: from a\r\n\tby b\r\nreceived: from c\r\nRECEIVED: from d\r\nSubject: s\r\nX-Dup: 1\r\nX-DUP: 2\r\n\r\n"
	h, _, err := readHeaderString(in, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Count("Received"); got != 3 {
		t.Errorf(`Count("Received") = %d, want 3`, got)
	}
	if got := h.Count("rEcEiVeD"); got != 3 {
		t.Errorf(`Count("rEcEiVeD") = %d, want 3`, got)
	}
	if got := h.Count("Missing"); got != 0 {
		t.Errorf(`Count("Missing") = %d, want 0`, got)
	}
	if got := h.Get("RECEIVED"); got != "from a\tby b" {
		t.Errorf(`Get("RECEIVED") = %q, want the first value, unfolded`, got)
	}
	if got := h.Get("subject"); got != "s" {
		t.Errorf(`Get("subject") = %q`, got)
	}
	if got := h.Get("Missing"); got != "" {
		t.Errorf(`Get("Missing") = %q, want ""`, got)
	}
	if got, want := h.Values("x-dup"), []string{"1", "2"}; !slices.Equal(got, want) {
		t.Errorf(`Values("x-dup") = %q, want %q`, got, want)
	}
	if got := h.Values("Missing"); got != nil {
		t.Errorf(`Values("Missing") = %q, want nil`, got)
	}
	if got := h.Len(); got != 6 {
		t.Errorf("Len() = %d, want 6", got)
	}
	var zero Header
	if zero.Len() != 0 || zero.Get("x") != "" || zero.Count("x") != 0 || zero.Values("x") != nil {
		t.Error("zero Header is not empty")
	}
}

func TestReadHeaderTooLarge(t *testing.T) {
	in := "Subject: 0123456789\r\n\r\n" // 23 bytes
	if _, raw, err := readHeaderString(in, len(in)); err != nil || string(raw) != in {
		t.Errorf("header of exactly max bytes: raw %q, err %v", raw, err)
	}
	for _, s := range []string{in, "Subject: " + strings.Repeat("x", 10000)} {
		_, raw, err := readHeaderString(s, len(in)-1)
		if !errors.Is(err, ErrHeaderTooLarge) {
			t.Errorf("ReadHeader(%.30q, %d): err %v, want ErrHeaderTooLarge", s, len(in)-1, err)
		}
		if raw != nil {
			t.Errorf("raw = %q on error, want nil", raw)
		}
	}
	if _, _, err := readHeaderString(in, 0); err == nil {
		t.Error("max 0 accepted")
	}
}

func TestReadHeaderMalformed(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"From a@example.com Tue Mar  4 05:06:07 2025\r\nSubject: x\r\n\r\n", `line 1: mbox "From " line`},
		{" continued\r\nSubject: x\r\n\r\n", "line 1: continuation line before the first field"},
		{"Subject: x\r\nno colon here\r\n\r\n", "line 2: \"no colon here\" is not a field"},
		{"Subject: x\r\n: empty name\r\n\r\n", "line 2: empty field name"},
		{"Subject : x\r\n\r\n", `field name "Subject " contains ' '`},
		{"Sub\x00ject: x\r\n\r\n", `contains byte 0x00`},
		{"Subj\xc3\xa9ct: x\r\n\r\n", `contains byte 0xc3`},
		{"Subject: a\rBcc: evil\r\n\r\n", "line 1: bare CR"},
		{"Subject: a\r\r\n\r\n", "line 1: bare CR"},
		{"Subject: a\r\n\r", "line 2: bare CR"}, // not an empty line
		{"Subject: a\r\n\r\r\n", "line 2: bare CR"},
		{"Subject: a\r\nX: b\r", "line 2: bare CR"},
	}
	for _, tt := range tests {
		_, raw, err := readHeaderString(tt.in, 1000)
		if !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("ReadHeader(%q): err %v, want ErrMalformedHeader", tt.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadHeader(%q): err %q, want it to contain %q", tt.in, err, tt.want)
		}
		if raw != nil {
			t.Errorf("ReadHeader(%q): raw %q on error, want nil", tt.in, raw)
		}
	}
}

// A reader error other than EOF must come back as it is.
func TestReadHeaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("Subject: x\r\n"), errReader{boom})
	_, _, err := ReadHeader(bufio.NewReader(r), 1000)
	if !errors.Is(err, boom) {
		t.Errorf("err %v, want %v", err, boom)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// Lines longer than the bufio buffer must be read whole.
func TestReadHeaderLongLine(t *testing.T) {
	long := strings.Repeat("x", 100)
	in := "Subject: " + long + "\r\n " + long + "\r\n\r\nbody"
	h, raw, err := ReadHeader(bufio.NewReaderSize(strings.NewReader(in), 16), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != in[:len(in)-4] {
		t.Errorf("raw = %q", raw)
	}
	if got := h.Get("Subject"); got != long+" "+long {
		t.Errorf("Subject = %q", got)
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{
		"", "\r\n", "Subject: x\r\n\r\nbody", "A: 1\r\n 2\nB:3\n\n", "From x\r\n",
		" x: y\r\n", "A: b\rc\r\n", "Received: a\r\nreceived: b\r\n\r\n", "X: y",
	} {
		f.Add([]byte(s), 64)
	}
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		max = max%4096 + 1
		if max <= 0 {
			max += 4096
		}
		h, raw, err := ReadHeader(bufio.NewReaderSize(bytes.NewReader(in), 16), max)
		if err != nil {
			if !errors.Is(err, ErrHeaderTooLarge) && !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !bytes.HasPrefix(in, raw) {
			t.Fatalf("raw %q is not a prefix of the input %q", raw, in)
		}
		if len(raw) > max {
			t.Fatalf("raw is %d bytes, over max %d", len(raw), max)
		}
		// Len is the number of field lines, that is lines that do not
		// continue a field, not counting the empty line at the end.
		lines := bytes.SplitAfter(raw, []byte("\n"))
		n := 0
		for _, l := range lines {
			if len(l) > 0 && l[0] != ' ' && l[0] != '\t' && !isEmptyLine(l) {
				n++
			}
		}
		if h.Len() != n {
			t.Fatalf("Len() = %d, but the header has %d field lines: %q", h.Len(), n, raw)
		}
		for _, f := range h.fields {
			if h.Count(f.name) == 0 || len(h.Values(f.name)) != h.Count(f.name) {
				t.Fatalf("field %q: Count %d, Values %q", f.name, h.Count(f.name), h.Values(f.name))
			}
		}
		checkFieldRaw(t, h, raw)
	})
}

func TestHeaderWithout(t *testing.T) {
	in := "Received: from a\r\n\tby b\r\nX-Tenant: 42\r\nSubject: hi\r\nx-tenant: 43\r\n  folded\r\nX-CS-Sensitivity: confidential\r\n\r\nbody\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	h, raw, err := ReadHeader(r, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	got := string(h.Without(raw, "X-Tenant", "x-cs-sensitivity"))
	if want := "Received: from a\r\n\tby b\r\nSubject: hi\r\n\r\n"; got != want {
		t.Errorf("Without = %q, want %q", got, want)
	}
	if got := string(h.Without(raw)); got != string(raw) {
		t.Errorf("Without() changed the header: %q", got)
	}
}
