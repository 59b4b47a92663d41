package delivery

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"gatehouse/mailmsg"
	"gatehouse/queue"
)

// The sender's SMTPUTF8 and DSN requests reach a next hop that offers the
// extensions, and only such a one; without SMTPUTF8 a U-label domain goes
// as A-labels and what has no ASCII form fails with 5.6.7 (RFC 6531
// 3.7.5), never downgraded.
func TestSendExtensions(t *testing.T) {
	utf8Msg := func(header bool, rcpts ...string) *queue.Outgoing {
		m := &queue.Outgoing{ID: "Q1", From: "sender@b.test", Rcpts: rcpts, Size: 3, Data: strings.NewReader("x\r\n"),
			SMTPUTF8: true, UTF8Header: header, Ret: "HDRS", EnvID: "e+1"}
		for _, r := range rcpts {
			m.Params = append(m.Params, queue.Rcpt{Addr: r, Notify: "SUCCESS,DELAY", ORCPT: mailmsg.OrigRcpt{Type: "utf-8", Addr: r}})
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		ehlo    string
		replies []string
		m       *queue.Outgoing
		sent    string // what the client wrote after EHLO
		results string
	}{{
		name:    "both offered",
		ehlo:    "250-x\r\n250-SMTPUTF8\r\n250 DSN\r\n",
		replies: []string{"250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n"},
		m:       utf8Msg(true, "müller@x.test"),
		sent:    "MAIL FROM:<sender@b.test> SMTPUTF8 RET=HDRS ENVID=e+2B1\r\nRCPT TO:<müller@x.test> NOTIFY=SUCCESS,DELAY ORCPT=utf-8;müller@x.test\r\nDATA\r\nx\r\n.\r\n",
		results: "[ok dsn]",
	}, {
		name:    "neither offered: A-labels, and 5.6.7 for a UTF-8 local part",
		ehlo:    "250 x\r\n",
		replies: []string{"250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n"},
		m:       utf8Msg(false, "müller@x.test", "a@bücher.test"),
		sent:    "MAIL FROM:<sender@b.test>\r\nRCPT TO:<a@xn--bcher-kva.test>\r\nDATA\r\nx\r\n.\r\n",
		results: "[5.6.7 permanent ok]",
	}, {
		name:    "a UTF-8 header and no SMTPUTF8: nothing sent",
		ehlo:    "250-x\r\n250 DSN\r\n",
		m:       utf8Msg(true, "a@x.test", "b@x.test"),
		sent:    "",
		results: "[5.6.7 permanent 5.6.7 permanent]",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, got, done := scriptServer(t, append([]string{"220 x\r\n", tc.ehlo}, tc.replies...)...)
			if err := c.greet("relay.test"); err != nil {
				t.Fatal(err)
			}
			cl := &client{c: c, hop: hop{name: "next.test", addr: "192.0.2.1:25"}}
			res, err := cl.Send(context.Background(), tc.m)
			if err != nil {
				t.Fatal(err)
			}
			var rs []string
			for _, r := range res {
				switch {
				case r.OK && r.DSN:
					rs = append(rs, "ok dsn")
				case r.OK:
					rs = append(rs, "ok")
				default:
					rs = append(rs, r.Status+map[bool]string{true: " permanent", false: " temporary"}[r.Permanent])
				}
			}
			if fmt.Sprint(rs) != tc.results {
				t.Errorf("results %v, want %s: %+v", rs, tc.results, res)
			}
			c.conn.Close()
			<-done
			if sent := strings.TrimPrefix(got.String(), "EHLO relay.test\r\n"); sent != tc.sent {
				t.Errorf("sent:\n%q\nwant:\n%q", sent, tc.sent)
			}
		})
	}
}
