package status

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"gatehouse/layout"
)

// Network is what the network service reports (its DETAIL, and the file
// it publishes in the run directory for the dns and ntp services).
type Network struct {
	Updated  time.Time         `json:"updated"`
	Links    []Link            `json:"links"`
	Routes   []string          `json:"routes"`
	Problems map[string]string `json:"problems,omitempty"` // what could not be done, by link or route
	Changes  uint64            `json:"changes"`            // netlink writes since start
	// Learned from DHCP, for the dns and ntp services.
	DNS    []netip.Addr `json:"dns,omitempty"`
	NTP    []netip.Addr `json:"ntp,omitempty"`
	Domain string       `json:"domain,omitempty"`
}

// Link is one configured link.
type Link struct {
	Key       string   `json:"key"`
	Name      string   `json:"name,omitempty"`
	State     string   `json:"state"` // up, down, missing
	MTU       int      `json:"mtu,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	DHCP      *DHCP    `json:"dhcp,omitempty"`
}

// DHCP is one interface's lease.
type DHCP struct {
	State     string     `json:"state"` // selecting, bound, renewing, rebinding, expired
	Address   string     `json:"address,omitempty"`
	Router    string     `json:"router,omitempty"`
	Server    string     `json:"server,omitempty"`
	Obtained  *time.Time `json:"obtained,omitempty"`
	Renew     *time.Time `json:"renew,omitempty"`
	Rebind    *time.Time `json:"rebind,omitempty"`
	Expires   *time.Time `json:"expires,omitempty"`
	Renewals  int        `json:"renewals"`
	LastError string     `json:"last_error,omitempty"`
}

// ReadNetwork reads what the network service published in runDir
// (layout.NetworkState).
func ReadNetwork(runDir string) (Network, error) {
	var st Network
	b, err := os.ReadFile(filepath.Join(runDir, layout.NetworkState))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}
