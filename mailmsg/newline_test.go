package mailmsg

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestNewlineGuard(t *testing.T) {
	cases := []struct {
		in, norm string
		bare     bool
	}{
		{"a\r\nb\r\n", "a\r\nb\r\n", false},
		{"a\nb\r\n", "a\r\nb\r\n", true},
		{"a\rb\r\n", "a\r\nb\r\n", true},
		{"a\r\n.\nMAIL FROM:<x@y>\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", true},
		{"a\r\r\n", "a\r\n\r\n", true},
		{"end\r", "end\r\n", true},
		{"", "", false},
	}
	for _, c := range cases {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(c.in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			g := &NewlineGuard{r: r, normalize: true}
			out, err := io.ReadAll(g)
			if err != nil || string(out) != c.norm || g.found != c.bare {
				t.Errorf("normalize %q (one byte %v): %q, found %v, %v; want %q, %v", c.in, oneByte, out, g.found, err, c.norm, c.bare)
			}
			r = strings.NewReader(c.in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			_, err = io.ReadAll(&NewlineGuard{r: r})
			if c.bare != errors.Is(err, ErrBareNewline) {
				t.Errorf("reject %q (one byte %v): err %v", c.in, oneByte, err)
			}
		}
	}
}

func FuzzNewlineGuard(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\rd\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := io.ReadAll(&NewlineGuard{r: strings.NewReader(string(in)), normalize: true})
		if err != nil {
			t.Fatal(err)
		}
		// Normalised output has CR only before LF and LF only after CR.
		for i, b := range out {
			if b == '\r' && (i+1 >= len(out) || out[i+1] != '\n') || b == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("bare line end at %d in %q", i, out)
			}
		}
		_, err = io.ReadAll(&NewlineGuard{r: strings.NewReader(string(in))})
		clean := !strings.ContainsAny(strings.ReplaceAll(string(in), "\r\n", ""), "\r\n")
		if clean != (err == nil) {
			t.Fatalf("reject mode on %q: %v", in, err)
		}
		// The same as the byte-wise scan it replaced, however the input is
		// cut into reads, in both modes.
		for _, normalize := range []bool{true, false} {
			for _, r := range []io.Reader{strings.NewReader(string(in)), iotest.OneByteReader(strings.NewReader(string(in))), iotest.HalfReader(strings.NewReader(string(in)))} {
				got, gerr := io.ReadAll(&NewlineGuard{r: r, normalize: normalize})
				want, werr := refGuard(in, normalize)
				// (What comes before a rejection is never used.)
				if (gerr == nil) != (werr == nil) || werr == nil && string(got) != string(want) {
					t.Fatalf("normalize %v on %q: got %q, %v; byte-wise %q, %v", normalize, in, got, gerr, want, werr)
				}
			}
		}
	})
}

// refGuard is the byte-wise guard: CRLF passes, a bare CR or LF becomes
// CRLF (normalize) or is an error at that point.
func refGuard(in []byte, normalize bool) ([]byte, error) {
	var out []byte
	for i := 0; i < len(in); i++ {
		switch {
		case in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case in[i] == '\r' || in[i] == '\n':
			if !normalize {
				return out, ErrBareNewline
			}
			out = append(out, '\r', '\n')
		default:
			out = append(out, in[i])
		}
	}
	return out, nil
}
