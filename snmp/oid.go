package snmp

import (
	"fmt"
	"strconv"
	"strings"
)

// OID is an object identifier, as sub-identifiers.
type OID []uint32

// ParseOID reads a dotted OID ("1.3.6.1.2.1.1.1.0", a leading dot allowed).
func ParseOID(s string) (OID, error) {
	s = strings.TrimPrefix(s, ".")
	if s == "" {
		return nil, fmt.Errorf("snmp: empty OID")
	}
	parts := strings.Split(s, ".")
	if len(parts) > MaxOIDLen {
		return nil, fmt.Errorf("snmp: OID %q is longer than %d sub-identifiers", s, MaxOIDLen)
	}
	o := make(OID, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("snmp: OID %q: %q is not a sub-identifier", s, p)
		}
		o[i] = uint32(n)
	}
	if len(o) < 2 || o[0] > 2 || (o[0] < 2 && o[1] > 39) {
		return nil, fmt.Errorf("snmp: %q is not an OID", s)
	}
	return o, nil
}

// MustOID is ParseOID for the agent's own constants.
func MustOID(s string) OID {
	o, err := ParseOID(s)
	if err != nil {
		panic(err)
	}
	return o
}

// String is the dotted form.
func (o OID) String() string {
	var b strings.Builder
	for i, n := range o {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(uint64(n), 10))
	}
	return b.String()
}

// Compare orders OIDs lexicographically, as a walk visits them.
func (o OID) Compare(p OID) int {
	for i := 0; i < len(o) && i < len(p); i++ {
		switch {
		case o[i] < p[i]:
			return -1
		case o[i] > p[i]:
			return 1
		}
	}
	switch {
	case len(o) < len(p):
		return -1
	case len(o) > len(p):
		return 1
	}
	return 0
}

// HasPrefix says whether p is o or an ancestor of it.
func (o OID) HasPrefix(p OID) bool {
	if len(p) > len(o) {
		return false
	}
	for i := range p {
		if o[i] != p[i] {
			return false
		}
	}
	return true
}

// Append is o with sub-identifiers added, in a new slice.
func (o OID) Append(sub ...uint32) OID {
	out := make(OID, 0, len(o)+len(sub))
	return append(append(out, o...), sub...)
}

// parseOID decodes an OBJECT IDENTIFIER's value.
func parseOID(v []byte) (OID, error) {
	if len(v) == 0 {
		return nil, malformed("empty OID")
	}
	o := make(OID, 0, len(v)+1)
	var n uint64
	first := true
	for i, c := range v {
		if n == 0 && c == 0x80 {
			return nil, malformed("OID sub-identifier with a leading 0x80")
		}
		n = n<<7 | uint64(c&0x7f)
		if n > 0xffffffff {
			return nil, malformed("OID sub-identifier beyond 32 bits")
		}
		if c&0x80 != 0 {
			if i == len(v)-1 {
				return nil, malformed("OID ends inside a sub-identifier")
			}
			continue
		}
		if first {
			first = false
			switch {
			case n < 40:
				o = append(o, 0, uint32(n))
			case n < 80:
				o = append(o, 1, uint32(n-40))
			default:
				o = append(o, 2, uint32(n-80))
			}
		} else {
			o = append(o, uint32(n))
		}
		if len(o) > MaxOIDLen {
			return nil, malformed("OID longer than %d sub-identifiers", MaxOIDLen)
		}
		n = 0
	}
	return o, nil
}

// appendOID appends an OBJECT IDENTIFIER. An OID of fewer than two
// sub-identifiers is written as 0.0 (a varbind never carries one: the
// decoder refuses them).
func appendOID(dst []byte, tag byte, o OID) []byte {
	var first uint64
	if len(o) >= 2 {
		first = uint64(o[0])*40 + uint64(o[1])
	}
	n := subLen(first)
	for i := 2; i < len(o); i++ {
		n += subLen(uint64(o[i]))
	}
	dst = appendHeader(dst, tag, n)
	dst = appendSub(dst, first)
	for i := 2; i < len(o); i++ {
		dst = appendSub(dst, uint64(o[i]))
	}
	return dst
}

// oidLen is the encoded size of o with its header.
func oidLen(o OID) int {
	var first uint64
	if len(o) >= 2 {
		first = uint64(o[0])*40 + uint64(o[1])
	}
	n := subLen(first)
	for i := 2; i < len(o); i++ {
		n += subLen(uint64(o[i]))
	}
	return headerLen(n) + n
}

func subLen(n uint64) int {
	k := 1
	for n >= 0x80 {
		n >>= 7
		k++
	}
	return k
}

func appendSub(dst []byte, n uint64) []byte {
	k := subLen(n)
	for i := k - 1; i > 0; i-- {
		dst = append(dst, byte(n>>(7*i))|0x80)
	}
	return append(dst, byte(n&0x7f))
}
