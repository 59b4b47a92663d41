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
	case verb == "oauth2-login" && len(pos) == 1:
		return oauthLogin(e, pos[0])
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
		if resp.Detail != nil {
			status.WriteOAuth(e.Out, resp.Detail.OAuth)
		}
		return nil
	}
	return e.usage("fetch")
}

// loginPoll is how often oauth2-login asks the relay how the sign-in goes.
const loginPoll = 2 * time.Second

// oauthLogin signs an account in as a user (RFC 8628): the relay asks the
// provider for a code, this prints where to enter it, and waits while the
// relay polls the provider, until the user approved (the relay then keeps
// the refresh token), refused, or the code ran out.
func oauthLogin(e *Env, account string) error {
	resp, err := RelayCall(e.Paths.RelaySocket(), status.RelayRequest{Verb: "oauth2-login", ID: account})
	if err != nil {
		return err
	}
	l := resp.Login
	if l == nil {
		return fmt.Errorf("oauth2-login: the relay gave no code")
	}
	fmt.Fprintf(e.Out, "To sign %s in, open %s and enter the code %s", queue.Printable(account), queue.Printable(l.VerificationURI), queue.Printable(l.UserCode))
	if l.CompleteURI != "" {
		fmt.Fprintf(e.Out, "\n(or open %s)", queue.Printable(l.CompleteURI))
	}
	fmt.Fprintf(e.Out, "\nwithin %s. Waiting for the sign-in...\n", l.ExpiresIn.Round(time.Second))
	for deadline := time.Now().Add(l.ExpiresIn + time.Minute); time.Now().Before(deadline); time.Sleep(loginPoll) {
		resp, err := RelayCall(e.Paths.RelaySocket(), status.RelayRequest{Verb: "oauth2-login-wait", ID: account})
		if err != nil {
			return err
		}
		switch resp.Login.State {
		case "done":
			fmt.Fprintf(e.Out, "signed in: the relay keeps %s's refresh token\n", queue.Printable(account))
			return nil
		case "failed":
			return fmt.Errorf("oauth2-login: %s", resp.Login.Error)
		}
	}
	return fmt.Errorf("oauth2-login: nobody signed in before the code ran out")
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
