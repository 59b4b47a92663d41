package syslog

import (
	"strconv"
	"strings"
)

// ParseLine reads a service's output line as log/slog's text handler
// writes it (`level=INFO msg="queue flushed" id=42 peer="10.0.0.5:25"`,
// the time left out) into severity, message and attributes. A line that
// is not in that form (a panic's trace, a child's own output) is the
// message as it stands, at severity notice. Service output is not
// trusted: the line is only read, never interpreted beyond this.
func ParseLine(line string) (sev int, msg string, params []Param) {
	if !strings.HasPrefix(line, "level=") && !strings.HasPrefix(line, "time=") {
		return SevNotice, line, nil
	}
	sev = SevNotice
	gotMsg := false
	rest := line
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" {
			break
		}
		var key, val string
		var ok bool
		key, rest, ok = readToken(rest, '=')
		if !ok || rest == "" || rest[0] != '=' {
			return SevNotice, line, nil
		}
		val, rest, ok = readToken(rest[1:], ' ')
		if !ok {
			return SevNotice, line, nil
		}
		switch {
		case key == "level" && len(params) == 0 && !gotMsg:
			sev = severityOf(val)
		case key == "msg" && !gotMsg:
			msg, gotMsg = val, true
		case key == "time" && len(params) == 0 && !gotMsg:
			// PID 1 stamps the record; the service's own time is dropped
		default:
			params = append(params, Param{Name: key, Value: val})
		}
	}
	return sev, msg, params
}

// readToken reads a key or a value up to stop (or the end): a bare word,
// or a Go-quoted string as strconv.Quote writes it.
func readToken(s string, stop byte) (tok, rest string, ok bool) {
	if s != "" && s[0] == '"' {
		i := 1
		for ; i < len(s); i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == '"' {
				break
			}
		}
		if i >= len(s) {
			return "", "", false
		}
		v, err := strconv.Unquote(s[:i+1])
		if err != nil {
			return "", "", false
		}
		rest = s[i+1:]
		if rest != "" && rest[0] != stop && rest[0] != ' ' {
			return "", "", false
		}
		return v, rest, true
	}
	i := strings.IndexByte(s, stop)
	if stop != ' ' {
		if j := strings.IndexByte(s, ' '); j >= 0 && (i < 0 || j < i) {
			return "", "", false // a key with a space in it: not slog's
		}
	}
	if i < 0 {
		return s, "", true
	}
	return s[:i], s[i:], true
}

// severityOf maps a slog level ("INFO", "WARN", "ERROR+2", "DEBUG-4") to a
// syslog severity.
func severityOf(level string) int {
	base, off := level, 0
	if i := strings.IndexAny(level, "+-"); i > 0 {
		base = level[:i]
		n, err := strconv.Atoi(level[i:])
		if err != nil {
			return SevNotice
		}
		off = n
	}
	var l int
	switch base {
	case "DEBUG":
		l = -4
	case "INFO":
		l = 0
	case "WARN":
		l = 4
	case "ERROR":
		l = 8
	default:
		return SevNotice
	}
	switch l += off; {
	case l < 0:
		return SevDebug
	case l < 2:
		return SevInfo
	case l < 4:
		return SevNotice
	case l < 8:
		return SevWarning
	case l < 12:
		return SevErr
	case l < 16:
		return SevCrit
	default:
		return SevAlert
	}
}
