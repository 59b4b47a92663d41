package nrpe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

// Queries check_nrpe 4.1 sent (check_queue!100!500): v2 with its random
// padding, v4 padded to 1036 bytes.
func TestDecodeCheckNRPEQueries(t *testing.T) {
	for _, tt := range []struct {
		file    string
		version int
	}{{"testdata/check_nrpe-v2.bin", Version2}, {"testdata/check_nrpe-v4.bin", Version4}} {
		b, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ReadQuery(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if p.Version != tt.version || p.Type != QueryPacket || p.Buffer != "check_queue!100!500" {
			t.Errorf("%s: %+v", tt.file, p)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, v := range []int{Version2, Version4} {
		q := EncodeQuery(v, "check_load!1!2")
		if len(q) != 1036 {
			t.Errorf("v%d query of %d bytes, want 1036", v, len(q))
		}
		p, err := ReadQuery(bytes.NewReader(q))
		if err != nil || p.Buffer != "check_load!1!2" || p.Version != v {
			t.Errorf("v%d: %+v %v", v, p, err)
		}
		r := EncodeResponse(v, Warning, "WARNING - x | a=1")
		if binary.BigEndian.Uint16(r[2:4]) != ResponsePacket || binary.BigEndian.Uint16(r[8:10]) != Warning {
			t.Errorf("v%d response header % x", v, r[:16])
		}
		if v == Version2 && len(r) != 1036 {
			t.Errorf("v2 response of %d bytes", len(r))
		}
		if v == Version4 && (len(r) != 16+len("WARNING - x | a=1")+1 || int(binary.BigEndian.Uint32(r[12:16])) != len(r)-16) {
			t.Errorf("v4 response of %d bytes, length field %d", len(r), binary.BigEndian.Uint32(r[12:16]))
		}
		// The CRC is over the packet with the CRC field zeroed.
		if got, want := binary.BigEndian.Uint32(r[4:8]), checksum(r, v); got != want {
			t.Errorf("v%d response CRC %08x, want %08x", v, got, want)
		}
	}
	long := strings.Repeat("x", 70000)
	if r := EncodeResponse(Version2, OK, long); len(r) != 1036 || r[10+1023] != 0 {
		t.Errorf("v2 long response: %d bytes", len(r))
	}
	if r := EncodeResponse(Version4, OK, long); len(r) != 16+65536 {
		t.Errorf("v4 long response: %d bytes", len(r))
	}
}

func TestRefused(t *testing.T) {
	good := EncodeQuery(Version4, "_NRPE_CHECK")
	corrupt := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"v3":        corrupt(func(b []byte) []byte { b[1] = 3; return b }),
		"v1":        corrupt(func(b []byte) []byte { b[1] = 1; return b }),
		"bad crc":   corrupt(func(b []byte) []byte { b[20] ^= 1; return b }),
		"response":  corrupt(func(b []byte) []byte { b[3] = 2; binary.BigEndian.PutUint32(b[4:8], checksum(b, 4)); return b }),
		"too long":  corrupt(func(b []byte) []byte { binary.BigEndian.PutUint32(b[12:16], 65537); return b }),
		"truncated": good[:500],
		"short":     good[:5],
		"v2 short":  EncodeQuery(Version2, "x")[:1035],
	} {
		if p, err := ReadQuery(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: accepted %+v", name, p)
		} else if name == "v3" && !errors.Is(err, ErrVersion) {
			t.Errorf("v3: %v", err)
		}
	}
}

// ReadQuery reads no more than the header announces: a second query
// behind the first stays unread.
func TestReadQueryBounded(t *testing.T) {
	two := append(EncodeQuery(Version4, "a"), EncodeQuery(Version2, "b")...)
	r := bytes.NewReader(two)
	if p, err := ReadQuery(r); err != nil || p.Buffer != "a" {
		t.Fatalf("%+v %v", p, err)
	}
	if r.Len() != 1036 {
		t.Errorf("%d bytes left, want 1036", r.Len())
	}
}

func FuzzReadQuery(f *testing.F) {
	for _, file := range []string{"testdata/check_nrpe-v2.bin", "testdata/check_nrpe-v4.bin"} {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add(EncodeQuery(Version4, strings.Repeat("y", 3000)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ReadQuery(bytes.NewReader(b))
		if err != nil {
			return
		}
		if p.Version != Version2 && p.Version != Version4 || p.Type != QueryPacket || len(p.Buffer) > MaxV4Buffer {
			t.Fatalf("accepted %+v", p)
		}
		// What decodes encodes back to a query that decodes the same
		// (v2 cuts the buffer at 1023 bytes).
		q, err := ReadQuery(bytes.NewReader(EncodeQuery(p.Version, p.Buffer)))
		if err != nil || q.Buffer != p.Buffer {
			t.Fatalf("re-encoded %q: %+v %v", p.Buffer, q, err)
		}
		_, _ = ParseQuery(p.Buffer, true)
	})
}
