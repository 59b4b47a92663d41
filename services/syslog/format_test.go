package syslog

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// oracle parses one record strictly with go-syslog's RFC 5424 machine.
func oracle(t testing.TB, rec []byte) *rfc5424.SyslogMessage {
	t.Helper()
	m, err := rfc5424.NewParser().Parse(rec)
	if err != nil {
		t.Fatalf("go-syslog refuses %q: %v", rec, err)
	}
	return m.(*rfc5424.SyslogMessage)
}

func TestFormatParsesBack(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123000, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name     string
		e        Entry
		facility int
		max      int
		want     string
		sd       map[string]map[string]string
		msg      string
	}{
		{name: "plain", e: Entry{Time: at, Hostname: "gw1", AppName: "smtp", ProcID: "42", Severity: SevInfo, Msg: "queue flushed"}, facility: 16, max: 2048,
			want: `<134>1 2025-03-04T04:06:07.890123Z gw1 smtp 42 - - queue flushed`, msg: "queue flushed"},
		{name: "attributes escaped", e: Entry{Time: at, Hostname: "gw1", AppName: "smtp", ProcID: "42", MsgID: "rcpt", Severity: SevWarning,
			Params: []Param{{"peer", "10.0.0.5:25"}, {"reply", `550 "no" [x\y]`}}, Msg: "refused"}, facility: 3, max: 2048,
			want: `<28>1 2025-03-04T04:06:07.890123Z gw1 smtp 42 rcpt [gatehouse@32473 peer="10.0.0.5:25" reply="550 \"no\" [x\\y\]"] refused`,
			sd:   map[string]map[string]string{SDID: {"peer": "10.0.0.5:25", "reply": `550 "no" [x\y]`}}, msg: "refused"},
		{name: "multi-line message is one record", e: Entry{Time: at, Hostname: "gw1", AppName: "relay", Severity: SevErr, Msg: "first\nsecond\n\tthird"}, facility: 16, max: 2048,
			want: "<131>1 2025-03-04T04:06:07.890123Z gw1 relay - - - first\nsecond\n\tthird", msg: "first\nsecond\n\tthird"},
		{name: "header fields made printable", e: Entry{Time: at, Hostname: "gw 1", AppName: strings.Repeat("a", 60), ProcID: "", MsgID: "x\x00y", Severity: SevDebug}, facility: 23, max: 2048,
			want: "<191>1 2025-03-04T04:06:07.890123Z gw_1 " + strings.Repeat("a", 48) + " - x_y -"},
		{name: "bad attribute names", e: Entry{Time: at, Hostname: "gw1", AppName: "x", Severity: SevInfo, Params: []Param{{"a b=c]\"", "v"}, {"", "dropped"}, {strings.Repeat("k", 40), "long"}}}, facility: 0, max: 2048,
			want: `<6>1 2025-03-04T04:06:07.890123Z gw1 x - - [gatehouse@32473 a_b_c__="v" ` + strings.Repeat("k", 32) + `="long"]`,
			sd:   map[string]map[string]string{SDID: {"a_b_c__": "v", strings.Repeat("k", 32): "long"}}},
		{name: "cut on a character boundary", e: Entry{Time: at, Hostname: "gw1", AppName: "x", Severity: SevInfo, Msg: "ääääää"}, facility: 16, max: 56,
			want: "<134>1 2025-03-04T04:06:07.890123Z gw1 x - - - ääää", msg: "ääää"},
		{name: "structured data left out before it is cut", e: Entry{Time: at, Hostname: "gw1", AppName: "x", Severity: SevInfo, Params: []Param{{"k", strings.Repeat("v", 100)}}, Msg: "hello"}, facility: 16, max: 60,
			want: "<134>1 2025-03-04T04:06:07.890123Z gw1 x - - - hello", msg: "hello"},
		{name: "invalid UTF-8 replaced", e: Entry{Time: at, Hostname: "gw1", AppName: "x", Severity: SevInfo, Msg: "a\xffb", Params: []Param{{"k", "\xfe"}}}, facility: 16, max: 2048,
			want: "<134>1 2025-03-04T04:06:07.890123Z gw1 x - - [gatehouse@32473 k=\"\uFFFD\"] a\uFFFDb", msg: "a\uFFFDb", sd: map[string]map[string]string{SDID: {"k": "\uFFFD"}}},
	} {
		got := Format(nil, &tc.e, tc.facility, tc.max)
		if string(got) != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
			continue
		}
		if len(got) > tc.max {
			t.Errorf("%s: %d bytes, more than %d", tc.name, len(got), tc.max)
		}
		m := oracle(t, got)
		if int(*m.Facility) != tc.facility || int(*m.Severity) != tc.e.Severity || m.Appname == nil {
			t.Errorf("%s: go-syslog reads facility %d severity %d", tc.name, *m.Facility, *m.Severity)
		}
		if !m.Timestamp.Equal(tc.e.Time) {
			t.Errorf("%s: time %v, want %v", tc.name, m.Timestamp, tc.e.Time)
		}
		var sd map[string]map[string]string
		if m.StructuredData != nil {
			sd = *m.StructuredData
		}
		if !reflect.DeepEqual(sd, tc.sd) {
			t.Errorf("%s: structured data %v, want %v", tc.name, sd, tc.sd)
		}
		var msg string
		if m.Message != nil {
			msg = *m.Message
		}
		if msg != tc.msg {
			t.Errorf("%s: message %q, want %q", tc.name, msg, tc.msg)
		}
	}
}

// A stream of framed records, long and multi-line ones among them, reads
// back record by record with go-syslog's RFC 5425 octet-counting parser.
func TestFrameOctetCounting(t *testing.T) {
	var stream []byte
	var want []string
	for i := range 50 {
		e := Entry{Time: time.Now(), Hostname: "gw1", AppName: "smtp", ProcID: "7", Severity: i % 8,
			Params: []Param{{"n", fmt.Sprint(i)}}, Msg: fmt.Sprintf("line %d\n%s", i, strings.Repeat("ü", i*40))}
		rec := Format(nil, &e, 16, 1024)
		stream = Frame(stream, rec)
		want = append(want, string(rec))
	}
	var got []*rfc5424.SyslogMessage
	p := octetcounting.NewParser(gosyslog.WithListener(func(r *gosyslog.Result) {
		if r.Error != nil {
			t.Fatalf("record %d: %v", len(got), r.Error)
		}
		got = append(got, r.Message.(*rfc5424.SyslogMessage))
	}))
	p.Parse(bytes.NewReader(stream))
	if len(got) != len(want) {
		t.Fatalf("%d records read back, want %d", len(got), len(want))
	}
	for i, m := range got {
		if (*m.StructuredData)[SDID]["n"] != fmt.Sprint(i) || int(*m.Severity) != i%8 || !utf8.ValidString(*m.Message) {
			t.Errorf("record %d: %+v", i, m)
		}
	}
	if f := Frame(nil, []byte("<134>1 - - - - - - é")); string(f) != "21 <134>1 - - - - - - é" {
		t.Errorf("LEN counts bytes, without the space: %q", f)
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line   string
		sev    int
		msg    string
		params []Param
	}{
		{`level=INFO msg="queue flushed" id=42 peer="10.0.0.5:25"`, SevInfo, "queue flushed", []Param{{"id", "42"}, {"peer", "10.0.0.5:25"}}},
		{`level=WARN msg=retry err="dial tcp: \"x\" refused\nsecond line"`, SevWarning, "retry", []Param{{"err", "dial tcp: \"x\" refused\nsecond line"}}},
		{`level=ERROR msg="first\nsecond"`, SevErr, "first\nsecond", nil},
		{`level=DEBUG msg=x`, SevDebug, "x", nil},
		{`level=INFO+2 msg=x`, SevNotice, "x", nil},
		{`level=ERROR+4 msg=x`, SevCrit, "x", nil},
		{`time=2025-01-01T00:00:00Z level=INFO msg=x`, SevInfo, "x", nil},
		{`level=INFO msg="" empty=""`, SevInfo, "", []Param{{"empty", ""}}},
		{`panic: runtime error: index out of range`, SevNotice, "panic: runtime error: index out of range", nil},
		{`level=INFO msg="unterminated`, SevNotice, `level=INFO msg="unterminated`, nil},
		{`level=INFO msg=x bare`, SevNotice, `level=INFO msg=x bare`, nil},
		{`level=LOUD msg=x`, SevNotice, "x", nil},
	} {
		sev, msg, params := ParseLine(tc.line)
		if sev != tc.sev || msg != tc.msg || !reflect.DeepEqual(params, tc.params) {
			t.Errorf("%q: %d %q %q; want %d %q %q", tc.line, sev, msg, params, tc.sev, tc.msg, tc.params)
		}
	}
}

// Whatever a service writes, and whatever the limit, the record parses
// with go-syslog, stays within the limit, and frames exactly.
func FuzzFormat(f *testing.F) {
	f.Add(`level=INFO msg="queue flushed" id=42`, "smtp", "gw1", 2048)
	f.Add("level=WARN msg=\"a\\nb\" k=\"]\\\\\\\"\"", "relay", "gw 1", 480)
	f.Add("\xff\xfe plain", "", "", 100)
	f.Fuzz(func(t *testing.T, line, app, host string, max int) {
		if max < 480 || max > 1<<16 {
			max = 480 + (max&0xffff)%4096
		}
		sev, msg, params := ParseLine(line)
		e := Entry{Time: time.Unix(1700000000, 0), Hostname: host, AppName: app, ProcID: "1", Severity: sev, Params: params, Msg: msg}
		rec := Format(nil, &e, 16, max)
		if len(rec) > max {
			t.Fatalf("%d bytes, limit %d", len(rec), max)
		}
		if !utf8.Valid(rec) {
			t.Fatalf("not UTF-8: %q", rec)
		}
		m, err := rfc5424.NewParser().Parse(rec)
		if err != nil {
			t.Fatalf("go-syslog refuses %q: %v", rec, err)
		}
		if sm := m.(*rfc5424.SyslogMessage); int(*sm.Severity) != sev {
			t.Fatalf("severity %d, want %d", *sm.Severity, sev)
		}
		var n int
		framed := Frame(nil, rec)
		if _, err := fmt.Sscanf(string(framed), "%d ", &n); err != nil || n != len(rec) || len(framed) != len(fmt.Sprint(n))+1+n {
			t.Fatalf("frame %q: LEN %d for %d bytes", framed[:min(len(framed), 20)], n, len(rec))
		}
	})
}
