package mailmsg

import (
	"bytes"
	"errors"
	"io"
)

// ErrBareNewline is returned when message data holds a bare LF or CR and
// the guard rejects them: such line ends are how SMTP smuggling hides a second
// message inside the first for a downstream server that reads them
// differently.
var ErrBareNewline = errors.New("bare <LF> or <CR> in message data")

// NewlineGuard passes message data through, rejecting or normalising any
// line end other than CRLF. go-smtp hands DATA over unchanged, and a
// mailbox the collector empties may hold anything.
type NewlineGuard struct {
	r         io.Reader
	normalize bool
	cr        bool // the previous byte was a CR
	found     bool // a bare line end was seen (and normalised)
	buf       [32 << 10]byte
	out       []byte
	err       error
}

// NewNewlineGuard reads r. With normalize a bare line end becomes CRLF;
// without, it ends the data with ErrBareNewline.
func NewNewlineGuard(r io.Reader, normalize bool) *NewlineGuard {
	return &NewlineGuard{r: r, normalize: normalize}
}

// Found says whether a bare line end was seen (and normalised).
func (g *NewlineGuard) Found() bool { return g.found }

func (g *NewlineGuard) Read(p []byte) (int, error) {
	for {
		if len(g.out) > 0 {
			n := copy(p, g.out)
			g.out = g.out[n:]
			return n, nil
		}
		if g.err != nil {
			return 0, g.err
		}
		n, err := g.r.Read(g.buf[:])
		g.out = g.scan(g.buf[:n], g.out[:0])
		if g.err != nil {
			g.out = nil
			return 0, g.err
		}
		if err != nil {
			if g.cr { // data cannot end in a lone CR: go-smtp keeps the final CRLF
				g.bad()
				if g.err == nil {
					g.out = append(g.out, '\r', '\n')
				}
			}
			g.cr = false
			if g.err == nil {
				g.err = err
			}
		}
	}
}

func (g *NewlineGuard) bad() {
	g.found = true
	if !g.normalize {
		g.err = ErrBareNewline
	}
}

// scan copies in to out, checking every line end. The next CR and LF are
// found with bytes.IndexByte and remembered until passed, so each byte is
// searched once whatever the line ends; a line ending in CRLF is copied
// whole.
func (g *NewlineGuard) scan(in, out []byte) []byte {
	const unknown, none = -2, -1
	cr, lf := unknown, unknown // the next CR and LF at or after i
	next := func(c byte, from int) int {
		if j := bytes.IndexByte(in[from:], c); j >= 0 {
			return from + j
		}
		return none
	}
	for i := 0; i < len(in); {
		if g.cr {
			g.cr = false
			if in[i] == '\n' {
				out = append(out, '\r', '\n')
				i++
				continue
			}
			if g.bad(); g.err != nil {
				return out
			}
			out = append(out, '\r', '\n')
			continue
		}
		if cr != none && cr < i {
			cr = next('\r', i)
		}
		if lf != none && lf < i {
			lf = next('\n', i)
		}
		switch {
		case cr == none && lf == none: // no line end in sight
			return append(out, in[i:]...)
		case lf != none && (cr == none || lf < cr): // a bare LF
			out = append(out, in[i:lf]...)
			if g.bad(); g.err != nil {
				return out
			}
			out = append(out, '\r', '\n')
			i = lf + 1
		case lf == cr+1: // the line ends in CRLF
			out = append(out, in[i:lf+1]...)
			i = lf + 1
		default: // a CR not (or not yet) followed by LF
			out = append(out, in[i:cr]...)
			g.cr = true
			i = cr + 1
		}
	}
	return out
}
