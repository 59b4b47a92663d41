package status

// DNS is what the dns service reports.
type DNS struct {
	Mode       string    `json:"mode"` // system | builtin
	Servers    []string  `json:"servers"`
	Source     string    `json:"source"` // config | dhcp | none
	Search     []string  `json:"search,omitempty"`
	ResolvConf string    `json:"resolv_conf"`
	Listen     string    `json:"listen,omitempty"`
	Resolver   *DNSCache `json:"resolver,omitempty"`
}

// DNSCache is the built-in resolver's counters.
type DNSCache struct {
	Upstreams    []string `json:"upstreams"`
	Queries      uint64   `json:"queries"`
	CacheHits    uint64   `json:"cache_hits"`
	CacheMisses  uint64   `json:"cache_misses"`
	StaleServed  uint64   `json:"stale_served"`
	Failures     uint64   `json:"upstream_failures"`
	Entries      int      `json:"entries"`
	UpstreamDown bool     `json:"upstream_down"` // the last forward found no upstream answering
}
