package mailmsg

import "strings"

// TraceWord keeps a word someone else chose (a HELO name, an account's
// server or user) from breaking the trace field it is written into.
func TraceWord(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 33 || r > 126 || r == '(' || r == ')' || r == ';' {
			return '_'
		}
		return r
	}, s)
}
