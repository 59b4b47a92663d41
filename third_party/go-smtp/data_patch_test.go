package smtp

// Tests of the patched dataReader (PATCHES.md) against the upstream one kept
// in upstream_old_test.go: same bytes, same errors, same state, and no more
// reads of the connection.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// chunkSource is a connection's read side: it hands out data in chunks
// whose sizes come from next (given the size of the read), counts the calls,
// and ends with end, or io.EOF if nil (with the last chunk when
// eofWithData).
type chunkSource struct {
	data        []byte
	next        func(max int) int
	end         error
	eofWithData bool
	calls       int
}

// errConn is an error of the connection other than io.EOF.
var errConn = errors.New("connection reset by test")

func (s *chunkSource) Read(p []byte) (int, error) {
	s.calls++
	end := s.end
	if end == nil {
		end = io.EOF
	}
	if len(s.data) == 0 {
		return 0, end
	}
	k := s.next(len(p))
	if k > len(p) {
		k = len(p)
	}
	if k > len(s.data) {
		k = len(s.data)
	}
	n := copy(p, s.data[:k])
	s.data = s.data[n:]
	if len(s.data) == 0 && s.eofWithData {
		return n, end
	}
	return n, nil
}

// randomChunks returns a chunk size generator for a source: sometimes an
// empty read, otherwise 1 to max bytes, max chosen by the seed.
func randomChunks(seed int64) func(int) int {
	rng := rand.New(rand.NewSource(seed))
	max := []int{1, 3, 7, 64, 512, 4096, 1 << 20}[rng.Intn(7)]
	return func(int) int {
		if rng.Intn(8) == 0 {
			return 0
		}
		return 1 + rng.Intn(max)
	}
}

// readSize picks the size of the caller's buffer for one Read: 0 to
// 2*dataLen+8 bytes.
func readSize(rng *rand.Rand, dataLen int) int {
	max := 2*dataLen + 9
	switch rng.Intn(4) {
	case 0:
		max = 3
	case 1:
		max = 16
	case 2:
		max = 256
	}
	if max > 2*dataLen+9 {
		max = 2*dataLen + 9
	}
	return rng.Intn(max)
}

// compareDataReaders feeds data to the old and the new dataReader, each over
// its own bufio.Reader of bufSize over an identically chunked source, with
// the same sequence of read sizes, and fails on the first difference: in
// n, error, the caller's buffer, the reader's state, the bytes buffered, the
// reads of the source, or what is left to read afterwards. limit < 0 is no
// MaxMessageBytes. Now and then, as the server does once Data returns, the
// limit is lifted. The source ends with io.EOF or, for one seed in three,
// another error.
func compareDataReaders(t *testing.T, data []byte, seed, limit int64, bufSize int) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	srcSeed := rng.Int63()
	newSource := func() (*chunkSource, *bufio.Reader) {
		src := &chunkSource{data: data, next: randomChunks(srcSeed), eofWithData: srcSeed&1 == 0}
		if srcSeed%3 == 0 {
			src.end = errConn
		}
		return src, bufio.NewReaderSize(src, bufSize)
	}
	oldSrc, oldBR := newSource()
	newSrc, newBR := newSource()
	oldR := &oldDataReader{r: oldBR}
	newR := &dataReader{r: newBR}
	if limit >= 0 {
		oldR.limited, oldR.n = true, limit
		newR.limited, newR.n = true, limit
	}

	maxRead := 2*len(data) + 9
	oldBuf := make([]byte, maxRead)
	newBuf := make([]byte, maxRead)
	var out bytes.Buffer
	errs := 0
	for call := 0; call < 2*len(data)+64 && errs < 3; call++ {
		size := readSize(rng, len(data))
		if rng.Intn(16) == 0 {
			oldR.limited, newR.limited = false, false
		}
		for i := range oldBuf[:size] {
			oldBuf[i], newBuf[i] = byte(i), byte(i)
		}
		on, oerr := oldR.Read(oldBuf[:size])
		nn, nerr := newR.Read(newBuf[:size])
		where := func() string {
			return fmt.Sprintf("read %d (size %d, after %s)", call, size, short(out.String()))
		}
		if on != nn || oerr != nerr {
			t.Fatalf("%s: new gave %d, %v; old %d, %v", where(), nn, nerr, on, oerr)
		}
		if !bytes.Equal(oldBuf[:size], newBuf[:size]) {
			t.Fatalf("%s: new read %s, old %s", where(), short(string(newBuf[:size])), short(string(oldBuf[:size])))
		}
		if oldR.state != newR.state || oldR.limited != newR.limited || oldR.n != newR.n {
			t.Fatalf("%s: new state %d limited %v n %d; old %d %v %d", where(),
				newR.state, newR.limited, newR.n, oldR.state, oldR.limited, oldR.n)
		}
		if oldBR.Buffered() != newBR.Buffered() || oldSrc.calls != newSrc.calls || len(oldSrc.data) != len(newSrc.data) {
			t.Fatalf("%s: new has %d buffered, read the source %d times, %d left there; old %d, %d, %d", where(),
				newBR.Buffered(), newSrc.calls, len(newSrc.data), oldBR.Buffered(), oldSrc.calls, len(oldSrc.data))
		}
		out.Write(oldBuf[:on])
		if oerr != nil {
			errs++
		}
	}
	oldRest, oerr := io.ReadAll(oldBR)
	newRest, nerr := io.ReadAll(newBR)
	if !bytes.Equal(oldRest, newRest) || oerr != nerr {
		t.Fatalf("left after the reads: new %s, %v; old %s, %v", short(string(newRest)), nerr, short(string(oldRest)), oerr)
	}
}

// dataSeeds are inputs for the fuzzers and the random test.
var dataSeeds = []string{
	"",
	".\r\n",
	"\r\n.\r\n",
	"hello\r\n.\r\n",
	"hello\r\n.\r\nQUIT\r\n",
	"..\r\n...x\r\n.x\r\n.\r\n",
	"a\rb\r\n.\r\n",
	"a\n.\r\n.\r\n",
	"a\r\r\n.\r\n.\r\n",
	".\rX\r\n.\r\n",
	".\r\r\n.\r\n",
	"abc",
	"abc\r\n.\r",
	"Subject: x\r\n\r\n" + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/\r\n", 60) + "..dot\r\n.\r\nMAIL FROM:<>\r\n",
}

func FuzzDataReader(f *testing.F) {
	for i, s := range dataSeeds {
		f.Add([]byte(s), int64(i), int64(-1), uint16(0))
		f.Add([]byte(s), int64(i)+100, int64(len(s)/2), uint16(i*300))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed, limit int64, bufSize uint16) {
		if limit >= 0 {
			limit %= int64(len(data)) + 3
		}
		compareDataReaders(t, data, seed, limit, 16+int(bufSize)%4097)
	})
}

// randomSMTPData returns input made mostly of the bytes the DATA state
// machine cares about.
func randomSMTPData(rng *rand.Rand) []byte {
	pieces := []string{".", "\r", "\n", "\r\n", ".\r\n", "\r\n.\r\n", "..", "a", "bc", "defghijkl"}
	var b []byte
	for i := rng.Intn(60); i > 0; i-- {
		b = append(b, pieces[rng.Intn(len(pieces))]...)
	}
	return b
}

func TestDataReaderRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		data := randomSMTPData(rng)
		limit := int64(-1)
		if rng.Intn(2) == 0 {
			limit = rng.Int63n(int64(len(data)) + 3)
		}
		bufSize := 16
		switch rng.Intn(4) {
		case 0:
			bufSize = 16 + rng.Intn(100)
		case 1:
			bufSize = 4096
		}
		compareDataReaders(t, data, rng.Int63(), limit, bufSize)
	}
}

// short quotes s, or its start, end and length when long.
func short(s string) string {
	if len(s) <= 100 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...%q (%d bytes)", s[:40], s[len(s)-40:], len(s))
}

// scriptedSource returns a source whose reads return the chunks one by one
// (a chunk bigger than a read in several reads).
func scriptedSource(chunks []string) *chunkSource {
	chunks = append([]string(nil), chunks...)
	return &chunkSource{data: []byte(strings.Join(chunks, "")), next: func(max int) int {
		k := len(chunks[0])
		if k > max {
			k = max
		}
		if chunks[0] = chunks[0][k:]; chunks[0] == "" {
			chunks = chunks[1:]
		}
		return k
	}}
}

// scriptedReads reads r with read sizes cycling through sizes until an error.
func scriptedReads(t *testing.T, r io.Reader, sizes []int) (string, error) {
	t.Helper()
	var out []byte
	buf := make([]byte, 1<<16)
	for i := 0; i < 1<<16; i++ {
		n, err := r.Read(buf[:sizes[i%len(sizes)]])
		out = append(out, buf[:n]...)
		if err != nil {
			return string(out), err
		}
	}
	t.Fatalf("no error after %d reads", 1<<16)
	return "", nil
}

func TestDataReaderEdgeCases(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string // what each read of the connection returns
		reads  []int    // the caller's read sizes, cycled
		limit  int64    // MaxMessageBytes; 0: none
		end    error    // the connection's error after the chunks; nil: io.EOF
		want   string
		err    error
		// buffered is left in the bufio.Reader, unread in the connection.
		buffered, unread string
	}{
		{name: "plain", chunks: []string{"Subject: a\r\n\r\nbody\r\n.\r\n"}, want: "Subject: a\r\n\r\nbody\r\n", err: io.EOF},
		{name: "empty message", chunks: []string{".\r\n"}, want: "", err: io.EOF},
		{name: "empty line", chunks: []string{"\r\n.\r\n"}, want: "\r\n", err: io.EOF},
		{name: "end marker split across reads", chunks: []string{"body\r\n", ".", "\r", "\n", "QUIT\r\n"},
			want: "body\r\n", err: io.EOF, unread: "QUIT\r\n"},
		{name: "end marker split, 1-byte reads", chunks: []string{"body\r", "\n.", "\r", "\nQUIT\r\n"}, reads: []int{1},
			want: "body\r\n", err: io.EOF, buffered: "QUIT\r\n"},
		{name: "end marker split, odd reads", chunks: []string{"ab", "cdefgh\r\n.", "\r\nQUIT\r\n"}, reads: []int{3, 1, 2},
			want: "abcdefgh\r\n", err: io.EOF, buffered: "QUIT\r\n"},
		{name: "pipelined commands stay buffered", chunks: []string{"a\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", "DATA\r\n"},
			want: "a\r\n", err: io.EOF, buffered: "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", unread: "DATA\r\n"},
		{name: "dot-stuffing", chunks: []string{"..\r\n...x\r\n", "..", "y\r\n.\r\n"}, want: ".\r\n..x\r\n.y\r\n", err: io.EOF},
		{name: "leading dot dropped", chunks: []string{".x\r\n.\r\n"}, want: "x\r\n", err: io.EOF},
		{name: "dot mid-line kept", chunks: []string{"a.\r\n a..\r\n.\r\n"}, want: "a.\r\n a..\r\n", err: io.EOF},
		{name: "bare CR", chunks: []string{"a\rb\r\n\r.\r\n.\r\n"}, want: "a\rb\r\n\r.\r\n", err: io.EOF},
		{name: "bare CR then dot line is no end", chunks: []string{"a\r.\r\n"}, want: "a\r.\r\n", err: io.ErrUnexpectedEOF},
		{name: "bare LF", chunks: []string{"a\n.\r\n.\r\n"}, want: "a\n.\r\n", err: io.EOF},
		{name: "bare LF at line start", chunks: []string{"\n.\n.\r\n"}, want: "\n.\n.\r\n", err: io.ErrUnexpectedEOF},
		// Upstream: a '\r' after a '\r' leaves the CR state, so "\r\r\n"
		// does not start a line (net/textproto's DotReader would).
		{name: "CR CR LF", chunks: []string{"a\r\r\n.\r\n.\r\n"}, want: "a\r\r\n.\r\n", err: io.EOF},
		{name: "CR CR LF then dots", chunks: []string{"a\r\r\n..b\r\n.\r\n"}, want: "a\r\r\n..b\r\n", err: io.EOF},
		// Upstream: ".\r" not followed by '\n' loses both the dot and the CR.
		{name: "dot CR X", chunks: []string{".\rX\r\n.\r\n"}, want: "X\r\n", err: io.EOF},
		{name: "dot CR CR LF", chunks: []string{".\r\r\n.\r\n.\r\n"}, want: "\r\n.\r\n", err: io.EOF},
		{name: "EOF mid-line", chunks: []string{"abc"}, want: "abc", err: io.ErrUnexpectedEOF},
		{name: "EOF after a line", chunks: []string{"abc\r\n"}, want: "abc\r\n", err: io.ErrUnexpectedEOF},
		{name: "EOF in the end marker", chunks: []string{"abc\r\n.\r"}, want: "abc\r\n", err: io.ErrUnexpectedEOF},
		{name: "connection error", chunks: []string{"abc\r\n"}, end: errConn, want: "abc\r\n", err: errConn},
		{name: "connection error after the marker", chunks: []string{"abc\r\n.\r\n"}, end: errConn, want: "abc\r\n", err: io.EOF},
		{name: "limit above the message", chunks: []string{"abcde\r\n.\r\nQUIT\r\n"}, limit: 8,
			want: "abcde\r\n", err: io.EOF, buffered: "QUIT\r\n"},
		// Upstream: a message of exactly MaxMessageBytes is refused: the
		// read after the last byte fails before it could see ".\r\n".
		{name: "limit hit exactly", chunks: []string{"abcde\r\n.\r\nQUIT\r\n"}, limit: 7,
			want: "abcde\r\n", err: ErrDataTooLarge, buffered: ".\r\nQUIT\r\n"},
		{name: "limit hit exactly, 1-byte reads", chunks: []string{"abcde\r\n.\r\n"}, reads: []int{1}, limit: 7,
			want: "abcde\r\n", err: ErrDataTooLarge, buffered: ".\r\n"},
		{name: "limit hit mid-line", chunks: []string{"abc", "de\r\n.\r\n"}, reads: []int{2}, limit: 3,
			want: "abc", err: ErrDataTooLarge, unread: "de\r\n.\r\n"},
		{name: "limit hit at a CR", chunks: []string{"abcd\r\n.\r\n"}, limit: 5,
			want: "abcd\r", err: ErrDataTooLarge, buffered: "\n.\r\n"},
		{name: "stuffed dots do not count", chunks: []string{"..ab\r\n.\r\n"}, limit: 6, want: ".ab\r\n", err: io.EOF},
		{name: "limit of a big message", chunks: []string{strings.Repeat("x", 5000) + "\r\n.\r\n"}, reads: []int{4096}, limit: 4500,
			want: strings.Repeat("x", 4500), err: ErrDataTooLarge, buffered: strings.Repeat("x", 500) + "\r\n.\r\n"},
	}
	impls := []struct {
		name string
		new  func(br *bufio.Reader, limit int64) io.Reader
	}{
		{"new", func(br *bufio.Reader, limit int64) io.Reader {
			return &dataReader{r: br, limited: limit > 0, n: limit}
		}},
		{"old", func(br *bufio.Reader, limit int64) io.Reader {
			return &oldDataReader{r: br, limited: limit > 0, n: limit}
		}},
	}
	for _, tc := range tests {
		for _, impl := range impls {
			src := scriptedSource(tc.chunks)
			src.end = tc.end
			br := bufio.NewReader(src)
			reads := tc.reads
			if reads == nil {
				reads = []int{4096}
			}
			got, err := scriptedReads(t, impl.new(br, tc.limit), reads)
			buffered, _ := br.Peek(br.Buffered())
			if got != tc.want || err != tc.err || string(buffered) != tc.buffered || string(src.data) != tc.unread {
				t.Errorf("%s, %s: got %s, %v, buffered %s, unread %s; want %s, %v, %s, %s", tc.name, impl.name,
					short(got), err, short(string(buffered)), short(string(src.data)),
					short(tc.want), tc.err, short(tc.buffered), short(tc.unread))
			}
		}
	}
}

// benchMessage returns a message of about size bytes as it comes after
// DATA: a header, base64 lines of 76 characters, a dot-stuffed line now
// and then, and the end marker.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("Received: from client.example.org (client.example.org [192.0.2.1])\r\n\tby mx.example.net with ESMTP; Mon, 1 Dec 2025 05:45:00 +0000\r\n")
	b.WriteString("From: a@example.org\r\nTo: b@example.net\r\nSubject: benchmark\r\nMessage-ID: <1@example.org>\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	rng := rand.New(rand.NewSource(3))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	line := make([]byte, 76)
	for i := 0; b.Len() < size-3; i++ {
		for j := range line {
			line[j] = alphabet[rng.Intn(len(alphabet))]
		}
		if i%50 == 49 {
			b.WriteString("..") // a line of the text starting with a dot
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// BenchmarkDataReader reads messages after DATA as the server does (a
// 4 KiB bufio.Reader, textproto's, under the dataReader) into a 32 KiB
// buffer, with the upstream and the patched dataReader.
func BenchmarkDataReader(b *testing.B) {
	for _, size := range []int{4 << 10, 100 << 10} {
		msg := benchMessage(size)
		impls := []struct {
			name string
			new  func(br *bufio.Reader) io.Reader
		}{
			{"old", func(br *bufio.Reader) io.Reader { return &oldDataReader{r: br, limited: true, n: 1 << 30} }},
			{"new", func(br *bufio.Reader) io.Reader { return &dataReader{r: br, limited: true, n: 1 << 30} }},
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, impl.name), func(b *testing.B) {
				src := bytes.NewReader(msg)
				br := bufio.NewReader(src)
				buf := make([]byte, 32<<10)
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					src.Reset(msg)
					br.Reset(src)
					r := impl.new(br)
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
