package oauth

import "strings"

// Mechanism picks the SASL mechanism an account logs in with: the one the
// config names, else OAUTHBEARER (RFC 7628) when the server offers it,
// else XOAUTH2, which Microsoft's and Google's servers take.
func Mechanism(configured string, offers func(mech string) bool) string {
	switch {
	case configured != "":
		return strings.ToUpper(configured)
	case offers("OAUTHBEARER"):
		return "OAUTHBEARER"
	}
	return "XOAUTH2"
}

// Initial returns what a client sends for mech with its token: the
// initial response, and the answer to the error challenge a server sends
// before it refuses (RFC 7628 3.2.3: a single %x01; XOAUTH2: nothing).
func Initial(mech, user, host string, port int, token string) (ir, abort []byte) {
	if mech == "OAUTHBEARER" {
		return OAuthBearer(user, host, port, token), []byte{1}
	}
	return XOAUTH2(user, token), []byte{}
}
