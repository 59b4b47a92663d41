package mailmsg

// TEMPORARY: replaced by the full codec at merge.

// OrigRcpt is the ORCPT parameter of RCPT TO (RFC 3461 4.2).
type OrigRcpt struct {
	Type string `json:"type"`
	Addr string `json:"addr"`
}

func (o OrigRcpt) IsZero() bool { return o.Type == "" && o.Addr == "" }

func (o OrigRcpt) Param(smtputf8 bool) (string, error) { return o.Type + ";" + o.Addr, nil }

func (o OrigRcpt) Field(global bool) string { return o.Type + ";" + o.Addr }

func EncodeXtext(s string) string { return s }
