package smtp

// Tests of the patched lineLimitReader (PATCHES.md) against the upstream one
// kept in upstream_old_test.go.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// compareLineLimitReaders reads data through the old and the new
// lineLimitReader with the same read sizes, changing LineLimit now and then
// as the server does around BDAT, and fails on the first difference in n,
// error, the caller's buffer or the line length counted. The source ends
// with io.EOF or, for one seed in three, another error.
func compareLineLimitReaders(t *testing.T, data []byte, seed int64, limit int) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	srcSeed := rng.Int63()
	var end error
	if srcSeed%3 == 0 {
		end = errConn
	}
	oldSrc := &chunkSource{data: data, next: randomChunks(srcSeed), end: end, eofWithData: srcSeed&1 == 0}
	newSrc := &chunkSource{data: data, next: randomChunks(srcSeed), end: end, eofWithData: srcSeed&1 == 0}
	oldR := &oldLineLimitReader{R: oldSrc, LineLimit: limit}
	newR := &lineLimitReader{R: newSrc, LineLimit: limit}
	maxRead := 2*len(data) + 9
	oldBuf := make([]byte, maxRead)
	newBuf := make([]byte, maxRead)
	errs := 0
	for call := 0; call < 2*len(data)+64 && errs < 8; call++ {
		if rng.Intn(8) == 0 {
			l := []int{0, limit, rng.Intn(40) - 2}[rng.Intn(3)]
			oldR.LineLimit, newR.LineLimit = l, l
		}
		size := readSize(rng, len(data))
		on, oerr := oldR.Read(oldBuf[:size])
		nn, nerr := newR.Read(newBuf[:size])
		if on != nn || oerr != nerr || !bytes.Equal(oldBuf[:size], newBuf[:size]) || oldR.curLineLength != newR.curLineLength {
			t.Fatalf("read %d (size %d, limit %d): new %d, %v, %s, line length %d; old %d, %v, %s, %d",
				call, size, oldR.LineLimit, nn, nerr, short(string(newBuf[:nn])), newR.curLineLength,
				on, oerr, short(string(oldBuf[:on])), oldR.curLineLength)
		}
		if oerr == io.EOF || oerr == errConn {
			break
		}
		if oerr != nil {
			errs++
		}
	}
}

func FuzzLineLimitReader(f *testing.F) {
	for i, s := range dataSeeds {
		f.Add([]byte(s), int64(i), 5)
		f.Add([]byte(s), int64(i)+100, 0)
		f.Add([]byte(s), int64(i)+200, 2000)
	}
	f.Add([]byte("abcd\r\nabcd\r\n"), int64(7), 5)
	f.Add([]byte("\n\n\n"), int64(8), -1)
	f.Fuzz(func(t *testing.T, data []byte, seed int64, limit int) {
		compareLineLimitReaders(t, data, seed, limit)
	})
}

func TestLineLimitReaderRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 20000; i++ {
		limit := rng.Intn(30) - 2
		if rng.Intn(10) == 0 {
			limit = 2000
		}
		compareLineLimitReaders(t, randomSMTPData(rng), rng.Int63(), limit)
	}
}

func TestLineLimitReaderEdgeCases(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string // one per read of the connection
		limit  int
		want   string // n and error of each read, one more than chunks
		curLen int
		unread string
	}{
		{name: "first line at the limit", chunks: []string{"abcd\r\n"}, limit: 5, want: "6 ok, 0 EOF", curLen: 1},
		// Upstream: the '\n' counts towards the line after it, so a later
		// line gets one byte less than the first.
		{name: "second line at the limit", chunks: []string{"abcd\r\nabcd\r\n"}, limit: 5, want: "0 long, 0 long", curLen: 6},
		{name: "second line one shorter", chunks: []string{"abcd\r\nabc\r\n"}, limit: 5, want: "11 ok, 0 EOF", curLen: 1},
		{name: "line over the limit across reads", chunks: []string{"ab", "cd", "ef"}, limit: 5, want: "2 ok, 2 ok, 0 long, 0 long", curLen: 6},
		{name: "the error sticks", chunks: []string{"abcdefgh", "\r\n"}, limit: 3, want: "0 long, 0 long, 0 long", curLen: 4, unread: "\r\n"},
		{name: "no limit", chunks: []string{strings.Repeat("a", 10000)}, limit: 0, want: "10000 ok, 0 EOF", curLen: 0},
		{name: "negative limit", chunks: []string{"\n", "x"}, limit: -1, want: "0 long, 0 long, 0 EOF", curLen: 2},
	}
	for _, tc := range tests {
		for _, impl := range []string{"new", "old"} {
			src := scriptedSource(tc.chunks)
			var r io.Reader
			var curLen func() int
			if impl == "new" {
				lr := &lineLimitReader{R: src, LineLimit: tc.limit}
				r, curLen = lr, func() int { return lr.curLineLength }
			} else {
				lr := &oldLineLimitReader{R: src, LineLimit: tc.limit}
				r, curLen = lr, func() int { return lr.curLineLength }
			}
			var got []string
			buf := make([]byte, 1<<16)
			for range append(tc.chunks, "") {
				n, err := r.Read(buf)
				e := map[error]string{nil: "ok", io.EOF: "EOF", ErrTooLongLine: "long"}[err]
				got = append(got, fmt.Sprintf("%d %s", n, e))
			}
			if strings.Join(got, ", ") != tc.want || curLen() != tc.curLen || string(src.data) != tc.unread {
				t.Errorf("%s, %s: got %s, line length %d, unread %q; want %s, %d, %q",
					tc.name, impl, strings.Join(got, ", "), curLen(), src.data, tc.want, tc.curLen, tc.unread)
			}
		}
	}
}

// BenchmarkLineLimitReader reads messages through the lineLimitReader as
// textproto's 4 KiB bufio.Reader does (LineLimit 2000, NewServer's).
func BenchmarkLineLimitReader(b *testing.B) {
	for _, size := range []int{4 << 10, 100 << 10} {
		msg := benchMessage(size)
		impls := []struct {
			name string
			new  func(r io.Reader) io.Reader
		}{
			{"old", func(r io.Reader) io.Reader { return &oldLineLimitReader{R: r, LineLimit: 2000} }},
			{"new", func(r io.Reader) io.Reader { return &lineLimitReader{R: r, LineLimit: 2000} }},
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, impl.name), func(b *testing.B) {
				src := bytes.NewReader(msg)
				buf := make([]byte, 4<<10)
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					src.Reset(msg)
					r := impl.new(src)
					for {
						_, err := r.Read(buf)
						if err == io.EOF {
							break
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
