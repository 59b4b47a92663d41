package queue

import (
	"fmt"
	"io"
	"strings"
)

// Printable makes text that came from elsewhere (a remote server's reply,
// an address) safe to print on an operator's terminal, often reached over
// SSH: control characters (C0, DEL, and C1 as runes) are escape sequences
// that can rewrite the screen, the window title, or worse. Line breaks and
// tabs become spaces, the others are dropped; a byte that is not UTF-8
// becomes U+FFFD.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case r < 0x20 || r == 0x7f || 0x80 <= r && r <= 0x9f:
			return -1
		}
		return r
	}, s)
}

// WriteList prints queued messages the way mailq does: id (with '*' while
// a delivery is in progress, '!' when held), size, arrival, sender, then
// each recipient still pending with its last error.
func WriteList(w io.Writer, list []Info) {
	if len(list) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	fmt.Fprintf(w, "%-22s %8s %-20s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")
	var total int64
	for _, in := range list {
		mark := " "
		switch {
		case in.Hold:
			mark = "!"
		case in.Active:
			mark = "*"
		}
		from := Printable(in.From)
		if from == "" {
			from = "MAILER-DAEMON"
		}
		fmt.Fprintf(w, "%-22s %8d %-20s %s\n", Printable(in.ID)+mark, in.Size, in.Arrived.Local().Format("Mon Jan _2 15:04:05"), from)
		lastErr := ""
		for i, r := range in.Rcpts {
			if in.Status[i] != "pending" {
				continue
			}
			if e := in.Errors[i]; e != "" && e != lastErr {
				fmt.Fprintf(w, "%52s(%s)\n", "", strings.TrimSpace(Printable(e)))
				lastErr = e
			}
			fmt.Fprintf(w, "%52s%s\n", "", Printable(r))
		}
		fmt.Fprintln(w)
		total += in.Size
	}
	fmt.Fprintf(w, "-- %d Kbytes in %d Request%s.\n", (total+1023)/1024, len(list), map[bool]string{true: "s"}[len(list) != 1])
}

// WriteInfo prints one message in detail (`gatehouse queue show`).
func WriteInfo(w io.Writer, in Info) {
	fmt.Fprintf(w, "id:        %s\n", Printable(in.ID))
	fmt.Fprintf(w, "arrived:   %s\n", in.Arrived.Local().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "size:      %d\n", in.Size)
	from := Printable(in.From)
	if from == "" {
		from = "<> (MAILER-DAEMON)"
	}
	fmt.Fprintf(w, "from:      %s\n", from)
	state := "queued"
	switch {
	case in.Hold:
		state = "on hold"
	case in.Active:
		state = "delivering"
	case !in.NextTry.IsZero():
		state = "deferred, next try " + in.NextTry.Local().Format("2006-01-02 15:04:05")
	}
	fmt.Fprintf(w, "state:     %s (%d attempts)\n", state, in.Attempts)
	if in.SMTPUTF8 {
		fmt.Fprintln(w, "smtputf8:  yes")
	}
	if in.Ret != "" || in.EnvID != "" {
		fmt.Fprintf(w, "dsn:       ret=%s envid=%s\n", Printable(in.Ret), Printable(in.EnvID))
	}
	for i, r := range in.Rcpts {
		fmt.Fprintf(w, "rcpt:      %s  %s via %s", Printable(r), in.Status[i], Printable(in.Routes[i].String()))
		if i < len(in.Notify) && in.Notify[i] != "" {
			fmt.Fprintf(w, "  notify=%s", Printable(in.Notify[i]))
		}
		if i < len(in.ORCPT) && in.ORCPT[i] != "" {
			fmt.Fprintf(w, "  orcpt=%s", Printable(in.ORCPT[i]))
		}
		if in.Errors[i] != "" {
			fmt.Fprintf(w, "  (%s)", Printable(in.Errors[i]))
		}
		fmt.Fprintln(w)
	}
}
