package queue

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// hostileReply is a next hop's reply that would, printed raw, clear the
// operator's screen, set the terminal title and colour what follows.
const hostileReply = "4.7.1 mx.example said: 421 \x1b[2J\x1b]0;owned\x07busy\r\nnext\tline \x7f\u009b31mred\xc2"

// terminalSafe says what is wrong with out for a terminal, or "".
func terminalSafe(out string) string {
	for i, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f || 0x80 <= r && r <= 0x9f) {
			return fmt.Sprintf("control character %U at offset %d", r, i)
		}
	}
	if !utf8.ValidString(out) {
		return "invalid UTF-8"
	}
	return ""
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":           "plain text",
		"a\r\nb\tc":            "a  b c",
		"\x1b[2Jclear":         "[2Jclear",
		"bell\x07":             "bell",
		"del\x7f":              "del",
		"c1 \u009b31m":         "c1 31m",
		"bad \xc2 byte":        "bad \uFFFD byte",
		"umlaut ä, 日本":         "umlaut ä, 日本",
		"\x00nul\x1f":          "nul",
		"keeps \u00a0nbsp too": "keeps \u00a0nbsp too",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// What mailq-style listings print of a remote server's words reaches the
// operator's terminal without control characters.
func TestWritersPrintNoControlCharacters(t *testing.T) {
	in := Info{ID: "ABC", Size: 10, Arrived: time.Now(), From: "a\x1b[1m@example.com", Rcpts: []string{"u@x.example"},
		Routes: []Route{{Kind: MX, Name: "x.example"}}, Status: []string{"pending"}, Errors: []string{hostileReply},
		SMTPUTF8: true, EnvID: "env\x1b]0;x\x07", Notify: []string{"SUCCESS"}, ORCPT: []string{"rfc822;o\x9b2J@x"}}
	var b bytes.Buffer
	WriteList(&b, []Info{in})
	WriteInfo(&b, in)
	if problem := terminalSafe(b.String()); problem != "" {
		t.Fatalf("%s in:\n%q", problem, b.String())
	}
	if !strings.Contains(b.String(), "421 [2J]0;ownedbusy  next line 31mred\uFFFD") {
		t.Errorf("the reply's text is gone:\n%s", b.String())
	}
}
