package status

import (
	"strings"
	"testing"
)

// `gatehouse fetch status` prints a server's error text without the
// control characters that would act on the operator's terminal.
func TestWriteFetchPrintsNoControlCharacters(t *testing.T) {
	var b strings.Builder
	WriteFetch(&b, []FetchAccount{{Name: "helpdesk", Protocol: "pop3s", Server: "mail.example:995", Failures: 2,
		LastError: "pop3: PASS: -ERR \x1b]0;owned\x07denied\r\n\x1b[2J\u009b31m", TooLarge: []string{"uid\x1b[1m"}}})
	out := b.String()
	for i, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f || 0x80 <= r && r <= 0x9f) {
			t.Fatalf("control character %U at offset %d in %q", r, i, out)
		}
	}
	if !strings.Contains(out, "-ERR ]0;owneddenied  [2J31m") {
		t.Errorf("the error's text is gone: %q", out)
	}
}
