// Package syslog forwards the appliance's log — every service's lines and
// the kernel's, as PID 1's log feed hands them over — to syslog servers as
// RFC 5424 records: over UDP (RFC 5426), and over TCP and TLS with octet
// counting (RFC 6587, RFC 5425). Each destination has its own bounded
// buffer and connection, so one that is slow or down holds up nothing
// else; what it cannot take is dropped, counted and reported to it once it
// is back.
package syslog

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SDID names the structured-data element that carries a line's key=value
// attributes. 32473 is the private enterprise number RFC 5612 reserves for
// documentation; a vendor build puts its own here.
const SDID = "gatehouse@32473"

// Severities (RFC 5424, section 6.2.1).
const (
	SevEmerg = iota
	SevAlert
	SevCrit
	SevErr
	SevWarning
	SevNotice
	SevInfo
	SevDebug
)

// Entry is one log record, read once and formatted for each destination.
type Entry struct {
	Time     time.Time
	Hostname string
	AppName  string // the service
	ProcID   string // its process ID
	MsgID    string
	Severity int
	Params   []Param // the line's key=value attributes
	Msg      string
}

// Param is one key=value attribute.
type Param struct{ Name, Value string }

// Header field lengths (RFC 5424, section 6).
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
	maxSDName   = 32
)

// Format appends e as an RFC 5424 record with the given facility, at most
// max bytes long: the message is cut first (on a character boundary),
// then the structured data is left out, so that what is sent always
// parses.
func Format(b []byte, e *Entry, facility int, max int) []byte {
	start := len(b)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(facility*8+e.Severity), 10)
	b = append(b, ">1 "...)
	if e.Time.IsZero() {
		b = append(b, '-')
	} else {
		b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	b = append(b, ' ')
	b = appendHeaderField(b, e.Hostname, maxHostname)
	b = append(b, ' ')
	b = appendHeaderField(b, e.AppName, maxAppName)
	b = append(b, ' ')
	b = appendHeaderField(b, e.ProcID, maxProcID)
	b = append(b, ' ')
	b = appendHeaderField(b, e.MsgID, maxMsgID)
	b = append(b, ' ')
	head := len(b)
	if head-start+1 > max {
		return b[:start+max] // only with absurd header fields: cut, still ASCII
	}
	b = appendSD(b, e.Params)
	if len(b)-start > max {
		b = append(b[:head], '-')
	}
	if e.Msg == "" {
		return b
	}
	room := max - (len(b) - start) - 1
	if room <= 0 {
		return b
	}
	b = append(b, ' ')
	return appendMsg(b, e.Msg, room)
}

// appendHeaderField writes a header field: printable US-ASCII only, at
// most n bytes; empty is the NILVALUE "-".
func appendHeaderField(b []byte, s string, n int) []byte {
	start := len(b)
	for i := 0; i < len(s) && len(b)-start < n; i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) == start {
		b = append(b, '-')
	}
	return b
}

// appendSD writes the attributes as one SD-ELEMENT, or the NILVALUE.
func appendSD(b []byte, params []Param) []byte {
	start := len(b)
	b = append(b, '[')
	b = append(b, SDID...)
	n := 0
	for _, p := range params {
		nameStart := len(b) + 1
		b = append(b, ' ')
		for i := 0; i < len(p.Name) && len(b)-nameStart < maxSDName; i++ {
			c := p.Name[i]
			if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
				c = '_'
			}
			b = append(b, c)
		}
		if len(b) == nameStart {
			b = b[:nameStart-1] // no name left: leave the attribute out
			continue
		}
		b = append(b, '=', '"')
		v := strings.ToValidUTF8(p.Value, "\uFFFD")
		for i := 0; i < len(v); i++ {
			switch c := v[i]; c {
			case '"', '\\', ']':
				b = append(b, '\\', c)
			default:
				b = append(b, c)
			}
		}
		b = append(b, '"')
		n++
	}
	if n == 0 {
		return append(b[:start], '-')
	}
	return append(b, ']')
}

// appendMsg writes the message as valid UTF-8, cut to at most n bytes on
// a character boundary. It carries no BOM: MSG-ANY, which every receiver
// takes as text.
func appendMsg(b []byte, msg string, n int) []byte {
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "\uFFFD")
	}
	if len(msg) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return append(b, msg...)
}

// Frame appends msg with RFC 6587 octet counting, as RFC 5425 has it for
// TLS: "LEN SP MSG", LEN being msg's length in bytes without the space.
func Frame(b, msg []byte) []byte {
	b = strconv.AppendInt(b, int64(len(msg)), 10)
	b = append(b, ' ')
	return append(b, msg...)
}
