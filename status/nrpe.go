package status

import "gatehouse/dnsclient"

// NRPE is what the NRPE server reports.
type NRPE struct {
	Listen      string `json:"listen"`
	SSL         string `json:"ssl"` // off | on | required
	ClientCerts string `json:"client_certs,omitempty"`
	Certificate string `json:"certificate"` // the file served
	// Answered counts the queries answered, by state (OK, WARNING,
	// CRITICAL, UNKNOWN); the others count the connections turned away.
	Answered map[string]int64 `json:"answered"`
	// Protocols counts the queries answered by packet version and
	// transport: v2+tls, v4+tls, v2+plain, v4+plain.
	Protocols   map[string]int64 `json:"protocols"`
	NotAllowed  int64            `json:"refused_not_allowed"`
	OverLimit   int64            `json:"refused_over_limit"`
	BadRequests int64            `json:"bad_requests"` // no valid packet, or a TLS handshake that failed
	// Host names among monitoring.hosts and nrpe.allow.
	Names []dnsclient.NameStatus `json:"names,omitempty"`
}
