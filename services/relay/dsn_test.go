package relay

import (
	"strings"
	"testing"
)

func TestDSNQuoteIsBounded(t *testing.T) {
	line := "X-Filler: " + strings.Repeat("x", 1000) + "\r\n"
	raw := []byte(strings.Repeat(line, 100) + "\r\n")
	q := quoteForDSN(raw)
	if len(q) > dsnQuoteMax || len(q) == 0 || !strings.HasSuffix(string(q), "\r\n") || len(q)%len(line) != 0 {
		t.Errorf("quoted %d bytes of %d: want whole lines within %d", len(q), len(raw), dsnQuoteMax)
	}
	if small := []byte("Subject: hi\r\n\r\n"); string(quoteForDSN(small)) != string(small) {
		t.Error("a small header was changed")
	}
}
