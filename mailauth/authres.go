package mailauth

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// AuthResults is what one Authentication-Results field reports; a nil
// check was not done and is left out.
type AuthResults struct {
	SPF         *SPFResult
	DKIMChecked bool         // report DKIM: one result per signature, or dkim=none without any
	DKIM        []DKIMResult // the signatures verified
	DMARC       *DMARCResult
}

// Format composes the value of the Authentication-Results field (RFC 8601)
// with authserv-id our host name, for example:
//
//	mx.example.net; spf=pass smtp.mailfrom=a@example.com;
//	dkim=pass header.a=rsa-sha256 header.d=example.com header.s=sel;
//	dmarc=pass header.from=example.com policy.dmarc=reject
//
// (go-msgauth writes it on one line; the caller folds it if it wants).
// policy.dmarc is the policy the domain publishes for this From domain
// (p=, or sp=), the action taken is the caller's.
func (a AuthResults) Format(authservID string) string {
	var rs []authres.Result
	if s := a.SPF; s != nil {
		r := &authres.SPFResult{Value: authres.ResultValue(s.Result), From: s.MailFrom}
		if s.Identity == "helo" {
			r.Helo = s.Helo
		}
		if s.Result == "temperror" || s.Result == "permerror" {
			r.Reason = errText(s.Err)
		}
		rs = append(rs, r)
	}
	if a.DKIMChecked && len(a.DKIM) == 0 {
		rs = append(rs, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, k := range a.DKIM {
		rs = append(rs, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(k.Status), Params: map[string]string{
			"reason":   k.Reason,
			"header.d": k.Domain,
			"header.i": identifierParam(k),
			"header.s": k.Selector,
			"header.a": k.Algorithm,
		}})
	}
	if d := a.DMARC; d != nil {
		params := map[string]string{"header.from": d.FromDomain, "policy.dmarc": string(d.Policy)}
		if d.Status != DMARCPass && d.Status != DMARCNone {
			params["reason"] = d.Reason
		}
		rs = append(rs, &authres.GenericResult{Method: "dmarc", Value: authres.ResultValue(d.Status), Params: params})
	}
	return authres.Format(authservID, rs)
}

// identifierParam leaves out the default i= ("@"+d=), which says nothing
// header.d does not.
func identifierParam(k DKIMResult) string {
	if k.Identifier == "@"+k.Domain {
		return ""
	}
	return k.Identifier
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// OwnAuthResults returns the positions, among the values of a message's
// Authentication-Results fields in order, of those that claim authservID:
// RFC 8601 §5 has them removed before ours is added, since they did not
// come from us. The comparison ignores case; a field whose authserv-id
// cannot be read claims nothing.
func OwnAuthResults(values []string, authservID string) []int {
	var out []int
	for i, v := range values {
		if id, ok := AuthServID(v); ok && strings.EqualFold(id, authservID) {
			out = append(out, i)
		}
	}
	return out
}

// AuthServID reads the authserv-id at the start of an
// Authentication-Results value (RFC 8601 §2.2): after optional CFWS, a
// token or a quoted-string. go-msgauth's parser does not allow comments
// before it, which senders (and forgers) use.
func AuthServID(value string) (string, bool) {
	s := skipCFWS(value)
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; c {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return b.String(), b.Len() > 0
			default:
				b.WriteByte(c)
			}
		}
		return "", false // unterminated
	}
	end := strings.IndexFunc(s, func(c rune) bool {
		return c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?=`, c)
	})
	if end < 0 {
		end = len(s)
	}
	return s[:end], end > 0
}

// skipCFWS skips white space and (nested) comments.
func skipCFWS(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
	comment:
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					break comment
				}
			}
		}
		if i >= len(s) {
			return "" // unterminated comment
		}
		s = s[i+1:]
	}
}
