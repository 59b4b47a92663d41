package status

import (
	"fmt"
	"io"
	"strings"
	"time"

	"gatehouse/dnsclient"
	"gatehouse/queue"
)

// Relay is what `gatehouse status` shows for the relay.
type Relay struct {
	Queue      queue.Stats `json:"queue"`
	Accepted   int64       `json:"accepted"`
	Rejected   int64       `json:"rejected"`
	AuthFailed int64       `json:"auth_failed"`
	Auth       AuthGuard   `json:"auth_guard"`
	// Sessions ended at the hard error limit; MAILs refused for want of
	// queue space.
	ErrorLimit  int64          `json:"error_limit_disconnects"`
	NoSpace     int64          `json:"refused_no_space"`
	Connections int            `json:"connections"`
	Fetch       []FetchAccount `json:"fetch,omitempty"`
	// Host names in trusted_networks and the inbound connectors' networks.
	Names []dnsclient.NameStatus `json:"names,omitempty"`
	// DNSBL counts the DNSBL's lookups (smtp.checks.dnsbl); nil without.
	DNSBL *DNSBL `json:"dnsbl,omitempty"`
	// OAuth are the access tokens of the accounts and connectors that
	// log in with OAuth2 ("fetch:NAME", "connector:NAME").
	OAuth []OAuthToken `json:"oauth,omitempty"`
}

// OAuthToken is one account's access token: when it was fetched, until
// when it is good, and what the provider said when a fetch failed.
type OAuthToken struct {
	Account   string    `json:"account"`
	Fetched   time.Time `json:"fetched,omitzero"`
	Expires   time.Time `json:"expires,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// DNSBL is the DNSBL's part of the relay's status: a lookup that failed
// counts as an error, never as a listing.
type DNSBL struct {
	Queries uint64 `json:"queries"`
	Cached  uint64 `json:"cached"`
	Listed  uint64 `json:"listed"`
	Errors  uint64 `json:"errors"`
}

// AuthGuard is the SMTP AUTH guard's part of the relay's status.
type AuthGuard struct {
	BlockedClients int   `json:"blocked_clients"`
	Refused        int64 `json:"refused"`
}

// FetchAccount is what `gatehouse status`, `gatehouse fetch status` and
// the console show for one mailbox the collector empties.
type FetchAccount struct {
	Name      string    `json:"name"`
	Protocol  string    `json:"protocol"`
	Server    string    `json:"server"`
	LastPoll  time.Time `json:"last_poll,omitzero"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	Collected int64     `json:"collected"`
	Deleted   int64     `json:"deleted"`
	OnServer  int       `json:"on_server"`
	TooLarge  []string  `json:"too_large,omitempty"` // remote ids left on the server
	LastError string    `json:"last_error,omitempty"`
	NextPoll  time.Time `json:"next_poll,omitzero"`
	Failures  int       `json:"failures,omitempty"`
}

// WriteFetch prints the collector's accounts (`gatehouse fetch status`,
// console `fetch`).
func WriteFetch(w io.Writer, list []FetchAccount) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no fetch accounts")
		return
	}
	for _, a := range list {
		// The error and the ids are the servers' words: printable only.
		state := "ok"
		if a.LastError != "" {
			state = fmt.Sprintf("FAILING (%d in a row): %s", a.Failures, queue.Printable(a.LastError))
		}
		fmt.Fprintf(w, "%-16s %-5s %-28s collected %d, deleted %d, on server %d; last poll %s; next %s; %s\n",
			queue.Printable(a.Name), a.Protocol, queue.Printable(a.Server), a.Collected, a.Deleted, a.OnServer, ago(a.LastPoll), ago(a.NextPoll), state)
		if len(a.TooLarge) > 0 {
			fmt.Fprintf(w, "%-16s left on the server, larger than the relay accepts: %s\n", "", queue.Printable(strings.Join(a.TooLarge, " ")))
		}
	}
}

// WriteOAuth prints the OAuth2 tokens (`gatehouse fetch status`).
func WriteOAuth(w io.Writer, list []OAuthToken) {
	for _, t := range list {
		state := "ok"
		if t.LastError != "" {
			state = "FAILING: " + queue.Printable(t.LastError)
		}
		fmt.Fprintf(w, "%-24s token fetched %s, expires %s; %s\n", queue.Printable(t.Account), ago(t.Fetched), ago(t.Expires), state)
	}
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("15:04:05")
}
