package status

import "time"

// Syslog is what the syslog service reports.
type Syslog struct {
	// Feed is the service's subscription to PID 1's log feed:
	// "following", or what keeps it from it.
	Feed     string `json:"feed"`
	Received uint64 `json:"received"` // records taken from the feed
	// FeedLost counts records PID 1 dropped because this service did not
	// keep up.
	FeedLost     uint64              `json:"feed_lost"`
	Destinations []SyslogDestination `json:"destinations"`
}

// SyslogDestination is one syslog server's state and counters.
type SyslogDestination struct {
	Name        string    `json:"name"`  // tls://logs.example.com:6514
	State       string    `json:"state"` // connecting | up | down
	Since       time.Time `json:"since"`
	LastError   string    `json:"last_error,omitempty"`
	Queued      int       `json:"queued"` // records waiting in the buffer
	QueuedBytes int       `json:"queued_bytes"`
	Sent        uint64    `json:"sent"`
	Dropped     uint64    `json:"dropped"` // buffer full: not sent, counted and reported to the server
}
