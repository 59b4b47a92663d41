package status

import "gatehouse/dnsclient"

// SNMP is what the SNMP agent reports.
type SNMP struct {
	Listen      string `json:"listen"`
	EngineID    string `json:"engine_id"` // hex
	EngineBoots int64  `json:"engine_boots"`
	Objects     int    `json:"objects"` // instances in the last snapshot

	Requests     uint64 `json:"requests"`
	Answered     uint64 `json:"answered"`
	NotAllowed   uint64 `json:"not_allowed"`   // sources outside every allow list
	BadCommunity uint64 `json:"bad_community"` // unknown community, or one the source may not use
	RateLimited  uint64 `json:"rate_limited"`
	ParseErrors  uint64 `json:"parse_errors"`
	// The USM's report counters (RFC 3414 usmStats).
	UnknownEngineIDs     uint64 `json:"usm_unknown_engine_ids"`
	UnknownUserNames     uint64 `json:"usm_unknown_user_names"`
	WrongDigests         uint64 `json:"usm_wrong_digests"`
	NotInTimeWindows     uint64 `json:"usm_not_in_time_windows"`
	UnsupportedSecLevels uint64 `json:"usm_unsupported_sec_levels"`
	DecryptionErrors     uint64 `json:"usm_decryption_errors"`

	TrapsSent     uint64 `json:"traps_sent"`    // traps sent and informs acknowledged
	InformsAcked  uint64 `json:"informs_acked"` // of those, informs
	TrapErrors    uint64 `json:"trap_errors"`
	LastTrapError string `json:"last_trap_error,omitempty"`
	// Host names in the allow lists and among the trap receivers.
	Names []dnsclient.NameStatus `json:"names,omitempty"`
}
