package queue

import (
	"fmt"
	"io"
	"strings"
)

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
		from := in.From
		if from == "" {
			from = "MAILER-DAEMON"
		}
		fmt.Fprintf(w, "%-22s %8d %-20s %s\n", in.ID+mark, in.Size, in.Arrived.Local().Format("Mon Jan _2 15:04:05"), from)
		lastErr := ""
		for i, r := range in.Rcpts {
			if in.Status[i] != "pending" {
				continue
			}
			if e := in.Errors[i]; e != "" && e != lastErr {
				fmt.Fprintf(w, "%52s(%s)\n", "", strings.TrimSpace(e))
				lastErr = e
			}
			fmt.Fprintf(w, "%52s%s\n", "", r)
		}
		fmt.Fprintln(w)
		total += in.Size
	}
	fmt.Fprintf(w, "-- %d Kbytes in %d Request%s.\n", (total+1023)/1024, len(list), map[bool]string{true: "s"}[len(list) != 1])
}

// WriteInfo prints one message in detail (`gatehouse queue show`).
func WriteInfo(w io.Writer, in Info) {
	fmt.Fprintf(w, "id:        %s\n", in.ID)
	fmt.Fprintf(w, "arrived:   %s\n", in.Arrived.Local().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "size:      %d\n", in.Size)
	from := in.From
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
	for i, r := range in.Rcpts {
		fmt.Fprintf(w, "rcpt:      %s  %s via %s", r, in.Status[i], in.Routes[i])
		if in.Errors[i] != "" {
			fmt.Fprintf(w, "  (%s)", in.Errors[i])
		}
		fmt.Fprintln(w)
	}
}
