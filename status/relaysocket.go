package status

import "gatehouse/queue"

// RelayRequest is one call on the relay's socket (`gatehouse queue ...`,
// `gatehouse smtp pop-auth ...`).
type RelayRequest struct {
	Verb string `json:"verb"` // list | show | flush | hold | release | delete | pop-auth | stats
	ID   string `json:"id,omitempty"`
	Addr string `json:"addr,omitempty"`
}

// RelayResponse answers a RelayRequest.
type RelayResponse struct {
	Error   string       `json:"error,omitempty"`
	List    []queue.Info `json:"list,omitempty"`
	Info    *queue.Info  `json:"info,omitempty"`
	Detail  *Relay       `json:"detail,omitempty"`
	Flushed int          `json:"flushed,omitempty"`
}
