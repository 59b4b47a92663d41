package smtp

import (
	"bytes"
	"errors"
	"io"
)

var ErrTooLongLine = errors.New("smtp: too long a line in input stream")

// lineLimitReader reads from the underlying Reader but restricts
// line length of lines in input stream to a certain length.
//
// If line length exceeds the limit - Read returns ErrTooLongLine
type lineLimitReader struct {
	R         io.Reader
	LineLimit int

	curLineLength int
}

func (r *lineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}

	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}

	if r.LineLimit == 0 {
		return n, nil
	}

	// Each byte adds one to curLineLength, and a '\n' first resets it to
	// zero (so a '\n' counts towards the line it starts). Take a run of
	// bytes at a time: the first byte of p (a '\n' after the first run)
	// and all up to the next '\n'.
	p := b[:n]
	for len(p) > 0 {
		if p[0] == '\n' {
			r.curLineLength = 0
		}
		k := len(p)
		if i := bytes.IndexByte(p[1:], '\n'); i >= 0 {
			k = i + 1
		}
		if r.curLineLength+k > r.LineLimit {
			// The byte-wise count stops at the first byte over the limit.
			if r.curLineLength < r.LineLimit {
				r.curLineLength = r.LineLimit + 1
			} else {
				r.curLineLength++
			}
			return 0, ErrTooLongLine
		}
		r.curLineLength += k
		p = p[k:]
	}

	return n, nil
}
