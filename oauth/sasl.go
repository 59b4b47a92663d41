package oauth

import (
	"encoding/json"
	"strconv"
	"strings"
)

// XOAUTH2 is the initial client response of SASL XOAUTH2 (Google's and
// Microsoft's documented format), before base64.
func XOAUTH2(user, token string) []byte {
	return []byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

// OAuthBearer is the initial client response of SASL OAUTHBEARER (RFC 7628
// 3.1), before base64: the GS2 header naming user as the authorization
// identity, then host, port and the bearer token.
func OAuthBearer(user, host string, port int, token string) []byte {
	// RFC 5801 saslname: "," and "=" are escaped.
	u := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(user)
	return []byte("n,a=" + u + ",\x01host=" + host + "\x01port=" + strconv.Itoa(port) +
		"\x01auth=Bearer " + token + "\x01\x01")
}

// maxReason bounds FailureReason's text.
const maxReason = 200

// FailureReason decodes the (base64-decoded) challenge of a server refusing
// XOAUTH2 or OAUTHBEARER, a JSON object (RFC 7628 3.2.2), into a short text
// for logs: its status, schemes and scope. Nothing else of the challenge is
// repeated, so a server echoing the token cannot put it in a log.
func FailureReason(challenge []byte) string {
	var e struct {
		Status  any `json:"status"` // "invalid_token"; Google: "401"; some send a number
		Schemes any `json:"schemes"`
		Scope   any `json:"scope"`
	}
	if err := json.Unmarshal(challenge, &e); err != nil {
		return "the server's failure challenge is not JSON (" + strconv.Itoa(len(challenge)) + " bytes)"
	}
	var parts []string
	for _, f := range []struct {
		key string
		v   any
	}{{"status", e.Status}, {"schemes", e.Schemes}, {"scope", e.Scope}} {
		if s := printable(f.v); s != "" {
			parts = append(parts, f.key+" "+s)
		}
	}
	if len(parts) == 0 {
		return "the server refused the token (no status given)"
	}
	return truncate(strings.Join(parts, ", "), maxReason)
}

// printable is a JSON string or number as text, with anything outside
// printable ASCII replaced, so that a log line stays one line.
func printable(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case float64:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return ""
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	i := n - len(mark)
	for i > 0 && !utf8Start(s[i]) {
		i--
	}
	return s[:i] + mark
}

func utf8Start(b byte) bool { return b&0xc0 != 0x80 }
