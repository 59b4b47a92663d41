package command

import (
	"flag"
	"fmt"
	"strings"

	"gatehouse/queue"
	// The relay's socket protocol (Request, Response) and the collector's
	// account status are still the relay's own; the status package takes
	// them over, and then the shells import no service at all.
	"gatehouse/services/relay"
)

// queueCmd is mailq and postsuper: list, show, flush, hold, release,
// delete. Alone, it lists.
func queueCmd(e *Env, args []string) error {
	var format string
	pos, err := e.parse("queue", args, func(fs *flag.FlagSet) { fs.StringVar(&format, "format", "text", "text or json") })
	if err != nil {
		return err
	}
	verb := "list"
	if len(pos) > 0 {
		verb, pos = pos[0], pos[1:]
	}
	req := relay.Request{Verb: verb}
	switch verb {
	case "list", "flush":
		if len(pos) != 0 {
			return e.usage("queue")
		}
	case "show", "hold", "release", "delete":
		if len(pos) != 1 {
			return e.usage("queue")
		}
		req.ID = strings.TrimRight(pos[0], "*!") // as mailq marks them
	default:
		return e.usage("queue")
	}
	if err := checkFormat(format); err != nil {
		return err
	}
	resp, err := relay.Call(e.Paths.RelaySocket(), req)
	if err != nil {
		return err
	}
	if format == "json" {
		switch verb {
		case "list":
			if resp.List == nil {
				resp.List = []queue.Info{}
			}
			return e.writeJSON(resp.List)
		case "show":
			return e.writeJSON(resp.Info)
		}
		return e.writeJSON(resp)
	}
	switch verb {
	case "list":
		queue.WriteList(e.Out, resp.List)
	case "show":
		queue.WriteInfo(e.Out, *resp.Info)
	case "flush":
		fmt.Fprintf(e.Out, "%d deferred message(s) scheduled for delivery now\n", resp.Flushed)
	default:
		fmt.Fprintf(e.Out, "%s: %s\n", req.ID, map[string]string{"hold": "on hold", "release": "released", "delete": "deleted"}[verb])
	}
	return nil
}

// fetch is the collector's: status, and polling now. Alone, it shows
// the status.
func fetch(e *Env, args []string) error {
	var format string
	pos, err := e.parse("fetch", args, func(fs *flag.FlagSet) { fs.StringVar(&format, "format", "text", "text or json") })
	if err != nil {
		return err
	}
	verb := "status"
	if len(pos) > 0 {
		verb, pos = pos[0], pos[1:]
	}
	switch {
	case verb == "now" && len(pos) <= 1:
		req := relay.Request{Verb: "fetch-now"}
		if len(pos) == 1 {
			req.ID = pos[0]
		}
		if _, err := relay.Call(e.Paths.RelaySocket(), req); err != nil {
			return err
		}
		fmt.Fprintln(e.Out, "poll requested")
		return nil
	case verb == "status" && len(pos) == 0:
		if err := checkFormat(format); err != nil {
			return err
		}
		resp, err := relay.Call(e.Paths.RelaySocket(), relay.Request{Verb: "fetch-status"})
		if err != nil {
			return err
		}
		var list []relay.AccountStatus
		if resp.Detail != nil {
			list = resp.Detail.Fetch
		}
		if format == "json" {
			if list == nil {
				list = []relay.AccountStatus{}
			}
			return e.writeJSON(list)
		}
		relay.WriteFetch(e.Out, list)
		return nil
	}
	return e.usage("fetch")
}
