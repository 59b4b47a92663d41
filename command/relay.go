package command

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"gatehouse/queue"
	"gatehouse/sockrpc"
	"gatehouse/status"
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
	req := status.RelayRequest{Verb: verb}
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
	resp, err := RelayCall(e.Paths.RelaySocket(), req)
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
		req := status.RelayRequest{Verb: "fetch-now"}
		if len(pos) == 1 {
			req.ID = pos[0]
		}
		if _, err := RelayCall(e.Paths.RelaySocket(), req); err != nil {
			return err
		}
		fmt.Fprintln(e.Out, "poll requested")
		return nil
	case verb == "status" && len(pos) == 0:
		if err := checkFormat(format); err != nil {
			return err
		}
		resp, err := RelayCall(e.Paths.RelaySocket(), status.RelayRequest{Verb: "fetch-status"})
		if err != nil {
			return err
		}
		var list []status.FetchAccount
		if resp.Detail != nil {
			list = resp.Detail.Fetch
		}
		if format == "json" {
			if list == nil {
				list = []status.FetchAccount{}
			}
			return e.writeJSON(list)
		}
		status.WriteFetch(e.Out, list)
		return nil
	}
	return e.usage("fetch")
}

// RelayCall sends one request to the relay's socket. An error the relay
// answered comes with its Response.
func RelayCall(path string, req status.RelayRequest) (*status.RelayResponse, error) {
	var r status.RelayResponse
	err := sockrpc.Call(path, 60*time.Second, req, &r)
	var de *sockrpc.DialError
	var ae *sockrpc.AnswerError
	switch {
	case err == nil:
		return &r, nil
	case errors.As(err, &ae):
		return &r, err
	case errors.As(err, &de):
		return nil, fmt.Errorf("the relay is not running (no %s): %w", path, de.Err)
	}
	return nil, err
}
