package status

import "time"

// NTP is what the ntp service reports.
type NTP struct {
	Synced     bool          `json:"synced"`
	SetsClock  bool          `json:"sets_clock"`
	Server     string        `json:"server,omitempty"`
	Stratum    uint8         `json:"stratum,omitempty"`
	Offset     time.Duration `json:"offset_ns"`
	RTT        time.Duration `json:"rtt_ns"`
	LastSync   time.Time     `json:"last_sync"`
	Poll       time.Duration `json:"poll_ns"`
	Steps      int           `json:"steps"`
	Slews      int           `json:"slews"`
	Servers    []string      `json:"servers"`
	Source     string        `json:"source"` // config | dhcp | none
	Samples    []NTPSample   `json:"samples"`
	LastError  string        `json:"last_error,omitempty"`
	LastAction string        `json:"last_action,omitempty"`
}

// NTPSample is one server's answer to one query.
type NTPSample struct {
	Server       string        `json:"server"`
	Offset       time.Duration `json:"offset_ns"`
	RTT          time.Duration `json:"rtt_ns"`
	Stratum      uint8         `json:"stratum"`
	RootDistance time.Duration `json:"root_distance_ns"`
	Err          string        `json:"error,omitempty"`
}
