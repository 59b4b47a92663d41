package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// ClusterNode is what the cluster service reports about this node, in
// `gatehouse status`.
type ClusterNode struct {
	Node      string `json:"node"`
	Role      string `json:"role"`       // backend | frontend, as joined
	Joined    bool   `json:"joined"`     // false: cluster: is configured, but no init or join yet
	RaftState string `json:"raft_state"` // Leader | Follower | Candidate | Shutdown
	Voter     bool   `json:"voter"`
	Leader    string `json:"leader,omitempty"`
	// The cluster's config version as this node knows it, and the one it
	// runs.
	Version        uint64 `json:"version"`
	Hash           string `json:"hash,omitempty"`
	AppliedVersion uint64 `json:"applied_version"`
	AppliedHash    string `json:"applied_hash,omitempty"`
	LastError      string `json:"last_error,omitempty"`
}

// ClusterReport is what a node answers when the leader asks how it is.
type ClusterReport struct {
	Node           string        `json:"node"`
	Role           string        `json:"role"`
	Time           time.Time     `json:"time"` // its clock, for the offset
	Version        string        `json:"version"`
	AppliedVersion uint64        `json:"applied_version"`
	AppliedHash    string        `json:"applied_hash"`
	Services       []ServiceLine `json:"services"`
	Queue          int           `json:"queue"` // messages in the relay's queue
	// The collector's accounts, and those whose last poll failed.
	Collector       int           `json:"collector_accounts"`
	CollectorFailed int           `json:"collector_failing"`
	NTPOffset       time.Duration `json:"ntp_offset_ns"`
	NTPSynced       bool          `json:"ntp_synced"`
	// InstallError is why the cluster's latest version does not run here.
	InstallError string `json:"install_error,omitempty"`
}

// ServiceLine is one service in a node's report.
type ServiceLine struct {
	Name     string `json:"name"`
	Phase    Phase  `json:"phase"`
	Restarts int    `json:"restarts"`
}

// ClusterVersion names a config version.
type ClusterVersion struct {
	Version uint64    `json:"version"`
	Hash    string    `json:"hash"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
}

// ClusterPending is an apply awaiting confirmation.
type ClusterPending struct {
	Version  uint64    `json:"version"`
	Deadline time.Time `json:"deadline"`
	Previous uint64    `json:"previous"`
}

// ClusterMember is one node in `gatehouse cluster status`.
type ClusterMember struct {
	Name           string  `json:"name"`
	Role           string  `json:"role"`
	Address        string  `json:"address"`
	Voter          bool    `json:"voter"`
	Reachable      bool    `json:"reachable"`
	AgeS           float64 `json:"age_s"` // since its last report; -1: none yet
	AppliedVersion uint64  `json:"applied_version"`
	AppliedHash    string  `json:"applied_hash"`
	ClockOffsetMS  float64 `json:"clock_offset_ms"`
	Version        string  `json:"version"`
	Queue          int     `json:"queue"`
	// CollectorFailing counts the collector's accounts whose last poll
	// failed.
	CollectorFailing int           `json:"collector_failing"`
	NTPOffset        time.Duration `json:"ntp_offset_ns"`
	Services         []ServiceLine `json:"services,omitempty"`
	Problems         []string      `json:"problems"`
	InstallError     string        `json:"install_error,omitempty"`
}

// Cluster is `gatehouse cluster status`: the cluster as its leader sees
// it, or, on a frontend or without a leader, as this node does.
type Cluster struct {
	Node      string          `json:"node"`
	Role      string          `json:"role"`
	RaftState string          `json:"raft_state"`
	Leader    string          `json:"leader"`
	Term      uint64          `json:"term"`
	From      string          `json:"from"` // the node whose view this is
	Config    ClusterVersion  `json:"config"`
	Pending   *ClusterPending `json:"pending,omitempty"`
	Nodes     []ClusterMember `json:"nodes"`
	Note      string          `json:"note,omitempty"` // why the view is partial
}

// Write prints the status as `gatehouse cluster status` does.
func (c *Cluster) Write(w io.Writer) {
	fmt.Fprintf(w, "node %s (%s, %s), leader %s, term %d\n", c.Node, c.Role, c.RaftState, orNone(c.Leader), c.Term)
	fmt.Fprintf(w, "config version %d  %s  by %s at %s\n", c.Config.Version, short(c.Config.Hash), c.Config.Author, c.Config.Time.UTC().Format(time.RFC3339))
	if p := c.Pending; p != nil {
		fmt.Fprintf(w, "version %d awaits confirmation until %s, else version %d comes back\n", p.Version, p.Deadline.UTC().Format(time.RFC3339), p.Previous)
	}
	if c.Note != "" {
		fmt.Fprintf(w, "note: %s\n", c.Note)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tADDRESS\tSEEN\tCONFIG\tCLOCK\tQUEUE\tPROBLEMS")
	for _, n := range c.Nodes {
		seen := "never"
		if n.AgeS >= 0 {
			seen = fmt.Sprintf("%.1fs ago", n.AgeS)
		}
		probs := strings.Join(n.Problems, ", ")
		if probs == "" {
			probs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tv%d %s\t%+.0fms\t%d\t%s\n", n.Name, n.Role, n.Address, seen,
			n.AppliedVersion, short(n.AppliedHash), n.ClockOffsetMS, n.Queue, probs)
	}
	tw.Flush()
	for _, n := range c.Nodes {
		if n.InstallError != "" {
			fmt.Fprintf(w, "%s cannot install the latest version: %s\n", n.Name, n.InstallError)
		}
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// ClusterRequest is a call to the cluster service's socket (the CLI's
// `gatehouse cluster ...`, and PID 1 forwarding `config apply`).
type ClusterRequest struct {
	Verb    string        `json:"verb"` // status | init | token | join | remove | recover | propose | confirm
	Address string        `json:"address,omitempty"`
	Token   string        `json:"token,omitempty"`
	TTL     time.Duration `json:"ttl,omitempty"`
	Node    string        `json:"node,omitempty"`
	File    string        `json:"file,omitempty"` // propose: a config file PID 1 validated
	Within  time.Duration `json:"within,omitempty"`
	Author  string        `json:"author,omitempty"`
}

// ClusterResponse answers a ClusterRequest.
type ClusterResponse struct {
	Error string `json:"error,omitempty"`
	// NotJoined: this node has the cluster section but is in no cluster
	// yet; PID 1 then applies a config here alone.
	NotJoined bool     `json:"not_joined,omitempty"`
	Token     string   `json:"token,omitempty"`
	Version   uint64   `json:"version,omitempty"`
	Message   string   `json:"message,omitempty"`
	Status    *Cluster `json:"status,omitempty"`
}
