package mailmsg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

var (
	// ErrHeaderTooLarge is wrapped by the error ReadHeader returns when the
	// header block is longer than the caller allows.
	ErrHeaderTooLarge = errors.New("mailmsg: header too large")
	// ErrMalformedHeader is wrapped by the error ReadHeader returns for a
	// line that is not valid RFC 5322 header syntax.
	ErrMalformedHeader = errors.New("mailmsg: malformed header")
)

// Header is a parsed RFC 5322 header block. The zero Header has no fields.
type Header struct {
	fields []field
}

type field struct {
	name  string // as written
	value string // unfolded, surrounding white space removed
	raw   []byte // the field's lines exactly as read, line ends included
}

// ReadHeader reads the header block of a message from r, up to and
// including the empty line that ends it, or up to EOF for a message without
// body. It returns the parsed header and the exact bytes consumed, so the
// caller can write them on unchanged.
//
// Lines end in CRLF; a bare LF line end is accepted too, because rejecting
// bare LF is a policy decision the caller makes separately. A bare CR is an
// error. The last line may lack its line end at EOF.
//
// max bounds the size of the header block, the empty line included; a larger
// header yields an error wrapping ErrHeaderTooLarge. Any line that is neither
// a field ("Name: value", the name being printable ASCII other than ':') nor
// the continuation of one (starting with SP or HTAB) yields an error wrapping
// ErrMalformedHeader; so does an mbox "From " line, which is not a field.
// On error the returned bytes are nil and the amount of input consumed is
// unspecified.
func ReadHeader(r *bufio.Reader, max int) (Header, []byte, error) {
	if max <= 0 {
		return Header{}, nil, fmt.Errorf("mailmsg: ReadHeader: max %d is not positive", max)
	}
	var (
		raw    []byte
		starts []int // offset in raw at which each field begins
		end    int   // offset in raw at which the fields end
	)
	for lineNo := 1; ; lineNo++ {
		start := len(raw)
		var readErr error
		raw, readErr = readLine(r, raw, max)
		if readErr != nil && readErr != io.EOF {
			return Header{}, nil, readErr
		}
		line := raw[start:]
		end = start
		if len(line) == 0 || isEmptyLine(line) {
			break
		}
		cont, err := checkLine(line, lineNo, len(starts) > 0)
		if err != nil {
			return Header{}, nil, err
		}
		if !cont {
			starts = append(starts, start)
		}
		end = len(raw)
		if readErr == io.EOF {
			break
		}
	}
	return newHeader(raw, starts, end), raw, nil
}

// readLine appends one line, line end included, from r to buf. It returns
// io.EOF when the input ends, and fails as soon as buf would grow past max,
// so that a line without end cannot exhaust memory.
func readLine(r *bufio.Reader, buf []byte, max int) ([]byte, error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > max {
			return buf, fmt.Errorf("%w: more than %d bytes", ErrHeaderTooLarge, max)
		}
		buf = append(buf, chunk...)
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}

func isEmptyLine(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}

// trimLineEnd removes a CRLF or LF line end.
func trimLineEnd(line []byte) []byte {
	line, ok := bytes.CutSuffix(line, []byte("\n"))
	if ok {
		line, _ = bytes.CutSuffix(line, []byte("\r"))
	}
	return line
}

// checkLine checks the syntax of one non-empty header line and says whether
// it continues the previous field.
func checkLine(line []byte, lineNo int, haveField bool) (cont bool, err error) {
	text := trimLineEnd(line)
	malformed := func(format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrMalformedHeader, lineNo, fmt.Sprintf(format, args...))
	}
	// A CR that does not end a line is read as a line end by some software
	// and not by other, which makes it a tool for hiding fields.
	if bytes.IndexByte(text, '\r') >= 0 {
		return false, malformed("bare CR")
	}
	if len(text) > 0 && (text[0] == ' ' || text[0] == '\t') {
		if !haveField {
			return false, malformed("continuation line before the first field")
		}
		return true, nil
	}
	if bytes.HasPrefix(text, []byte("From ")) {
		return false, malformed("mbox \"From \" line is not a header field")
	}
	colon := bytes.IndexByte(text, ':')
	switch {
	case colon < 0:
		return false, malformed("%q is not a field: no ':'", truncate(text, 40))
	case colon == 0:
		return false, malformed("empty field name")
	}
	for _, c := range text[:colon] {
		if c < 33 || c > 126 {
			return false, malformed("field name %q contains %s", truncate(text[:colon], 40), describeByte(c))
		}
	}
	return false, nil
}

// describeByte names a byte for an error message: quoted when printable,
// in hex otherwise, since %q would show an 8-bit byte as a Latin-1 rune.
func describeByte(c byte) string {
	if c >= ' ' && c < 0x7f {
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("byte %#02x", c)
}

// truncate keeps error messages short when input lines are long.
func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// newHeader builds the Header from the raw block once it is complete; raw
// must not grow any more, since the fields keep slices of it.
func newHeader(raw []byte, starts []int, end int) Header {
	h := Header{fields: make([]field, len(starts))}
	for i, start := range starts {
		stop := end
		if i+1 < len(starts) {
			stop = starts[i+1]
		}
		b := raw[start:stop:stop]
		colon := bytes.IndexByte(b, ':')
		h.fields[i] = field{
			name:  string(b[:colon]),
			value: unfold(b[colon+1:]),
			raw:   b,
		}
	}
	return h
}

// unfold turns a field body into its value. checkLine has made sure that CR
// and LF only occur in line ends, and every line end but the last is followed
// by white space, so deleting them is exactly the unfolding of RFC 5322
// section 2.2.3.
func unfold(body []byte) string {
	var sb strings.Builder
	sb.Grow(len(body))
	for _, c := range body {
		if c != '\r' && c != '\n' {
			sb.WriteByte(c)
		}
	}
	return strings.Trim(sb.String(), " \t")
}

// Get returns the value of the first field called name, compared
// case-insensitively, or "" if there is none.
func (h Header) Get(name string) string {
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// Values returns the values of all fields called name, in order.
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			vs = append(vs, f.value)
		}
	}
	return vs
}

// Count returns the number of fields called name, for example of Received
// fields to detect a mail loop.
func (h Header) Count(name string) int {
	n := 0
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			n++
		}
	}
	return n
}

// Len returns the number of fields.
func (h Header) Len() int { return len(h.fields) }

// Without returns raw, the bytes ReadHeader returned with h, less the
// fields whose name (case-insensitive) is in names; the rest is unchanged.
func (h Header) Without(raw []byte, names ...string) []byte {
	drop := func(n string) bool {
		for _, d := range names {
			if strings.EqualFold(n, d) {
				return true
			}
		}
		return false
	}
	out := make([]byte, 0, len(raw))
	kept := 0
	for _, f := range h.fields {
		if !drop(f.name) {
			out = append(out, f.raw...)
		}
		kept += len(f.raw)
	}
	// The empty line (or nothing, at EOF) after the fields.
	return append(out, raw[kept:]...)
}

// WithoutNth is Without for some fields of one name only: those at the
// positions nth (0 is the first field of that name), as Values lists them.
func (h Header) WithoutNth(raw []byte, name string, nth []int) []byte {
	out := make([]byte, 0, len(raw))
	kept, i := 0, 0
	for _, f := range h.fields {
		drop := false
		if strings.EqualFold(f.name, name) {
			drop = slices.Contains(nth, i)
			i++
		}
		if !drop {
			out = append(out, f.raw...)
		}
		kept += len(f.raw)
	}
	return append(out, raw[kept:]...)
}
