package status

import (
	"time"

	"gatehouse/queue"
)

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
	Login   *OAuthLogin  `json:"login,omitempty"`
}

// OAuthLogin is a device login in progress (`gatehouse fetch
// oauth2-login`, RFC 8628): where the user signs in, and how it went.
type OAuthLogin struct {
	Account         string        `json:"account"`
	VerificationURI string        `json:"verification_uri"`
	CompleteURI     string        `json:"verification_uri_complete,omitempty"`
	UserCode        string        `json:"user_code"`
	ExpiresIn       time.Duration `json:"expires_in"`
	State           string        `json:"state"` // pending | done | failed
	Error           string        `json:"error,omitempty"`
}
