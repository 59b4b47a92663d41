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

func TestDiagnostic(t *testing.T) {
	for in, want := range map[string]string{
		"":                                    "",
		"5.1.1 550 5.1.1 <u@x>: no such user": "smtp; 550 5.1.1 <u@x>: no such user",
		"4.4.1 connect to mx[192.0.2.1:25]: connection refused":                                              "X-Gatehouse; connect to mx[192.0.2.1:25]: connection refused",
		"5.6.7 SMTPUTF8 is required for the recipient address, but was not offered by host mx[192.0.2.1:25]": "X-Gatehouse; SMTPUTF8 is required for the recipient address, but was not offered by host mx[192.0.2.1:25]",
		"4.4.7 message expired in queue; last error: 4.4.1 timeout":                                          "X-Gatehouse; message expired in queue; last error: 4.4.1 timeout",
		"451 try later": "smtp; 451 try later",
	} {
		if got := diagnostic(in); got != want {
			t.Errorf("diagnostic(%q) = %q, want %q", in, got, want)
		}
	}
}
