// Package snmp is the appliance's SNMP agent: the BER wire format of
// SNMPv2c and SNMPv3 messages, the agent's MIB view (a sorted table of
// object instances), GET, GETNEXT and GETBULK, and the User-based Security
// Model (RFC 3414, RFC 7860, AES per RFC 3826 and the Blumenthal key
// extension for AES-192/256). It knows nothing of where the values come
// from: services/snmp fills the table.
//
// Every message is hostile until proven otherwise: the decoder takes only
// definite lengths of at most four octets, bounds integers, OIDs and the
// number of variable bindings, and never recurses beyond the fixed shape of
// a message.
package snmp

import (
	"errors"
	"fmt"
)

// BER tags of the types SNMP uses (RFC 3416, RFC 2578).
const (
	TagInteger     byte = 0x02
	TagOctetString byte = 0x04
	TagNull        byte = 0x05
	TagOID         byte = 0x06
	TagSequence    byte = 0x30
	TagIPAddress   byte = 0x40
	TagCounter32   byte = 0x41
	TagGauge32     byte = 0x42
	TagTimeTicks   byte = 0x43
	TagOpaque      byte = 0x44
	TagCounter64   byte = 0x46

	// Exceptions in a response's variable binding (RFC 3416 section 3).
	TagNoSuchObject   byte = 0x80
	TagNoSuchInstance byte = 0x81
	TagEndOfMibView   byte = 0x82
)

// PDU types.
const (
	PDUGet      byte = 0xa0
	PDUGetNext  byte = 0xa1
	PDUResponse byte = 0xa2
	PDUSet      byte = 0xa3
	PDUTrapV1   byte = 0xa4
	PDUGetBulk  byte = 0xa5
	PDUInform   byte = 0xa6
	PDUTrapV2   byte = 0xa7
	PDUReport   byte = 0xa8
)

// Bounds on what the decoder accepts.
const (
	MaxOIDLen   = 128 // sub-identifiers (RFC 2578 section 3.5)
	MaxVarBinds = 2048
)

// ErrMalformed is any message the decoder refuses.
var ErrMalformed = errors.New("snmp: malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// tlv reads one tag-length-value from b: the tag, the value, and the rest
// of b after it. Only single-octet tags and definite lengths are taken.
func tlv(b []byte) (tag byte, val, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, malformed("truncated header")
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, malformed("multi-octet tag")
	}
	n := int(b[1])
	off := 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 4 {
			return 0, nil, nil, malformed("length of %d octets", k)
		}
		if len(b) < 2+k {
			return 0, nil, nil, malformed("truncated length")
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		off += k
		if n < 0 {
			return 0, nil, nil, malformed("length overflows")
		}
	}
	if n > len(b)-off {
		return 0, nil, nil, malformed("length %d beyond the %d octets left", n, len(b)-off)
	}
	return tag, b[off : off+n], b[off+n:], nil
}

// expect reads a TLV that must carry tag.
func expect(b []byte, tag byte, what string) (val, rest []byte, err error) {
	t, v, r, err := tlv(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if t != tag {
		return nil, nil, malformed("%s: tag 0x%02x, want 0x%02x", what, t, tag)
	}
	return v, r, nil
}

// parseInt decodes a two's complement INTEGER of at most 8 octets.
func parseInt(v []byte) (int64, error) {
	if len(v) == 0 || len(v) > 8 {
		return 0, malformed("integer of %d octets", len(v))
	}
	n := int64(int8(v[0]))
	for _, c := range v[1:] {
		n = n<<8 | int64(c)
	}
	return n, nil
}

// parseUint decodes an unsigned application type (Counter32, Gauge32,
// TimeTicks, Counter64): at most 9 octets, the first a 0 pad.
func parseUint(v []byte, bits int) (uint64, error) {
	if len(v) == 0 || len(v) > bits/8+1 || (len(v) == bits/8+1 && v[0] != 0) {
		return 0, malformed("unsigned of %d octets", len(v))
	}
	var n uint64
	for _, c := range v {
		n = n<<8 | uint64(c)
	}
	return n, nil
}

func expectInt(b []byte, what string) (int64, []byte, error) {
	v, rest, err := expect(b, TagInteger, what)
	if err != nil {
		return 0, nil, err
	}
	n, err := parseInt(v)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", what, err)
	}
	return n, rest, nil
}

// expectInt32 reads an INTEGER in lo..hi.
func expectInt32(b []byte, what string, lo, hi int64) (int64, []byte, error) {
	n, rest, err := expectInt(b, what)
	if err != nil {
		return 0, nil, err
	}
	if n < lo || n > hi {
		return 0, nil, malformed("%s: %d out of range", what, n)
	}
	return n, rest, nil
}

// appendHeader appends a tag and the definite length n.
func appendHeader(dst []byte, tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, tag, byte(n))
	case n <= 0xff:
		return append(dst, tag, 0x81, byte(n))
	case n <= 0xffff:
		return append(dst, tag, 0x82, byte(n>>8), byte(n))
	default:
		return append(dst, tag, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// headerLen is the size of appendHeader's output for a length n.
func headerLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n <= 0xff:
		return 3
	case n <= 0xffff:
		return 4
	}
	return 5
}

func appendTLV(dst []byte, tag byte, val []byte) []byte {
	return append(appendHeader(dst, tag, len(val)), val...)
}

// appendInt appends an INTEGER (or another signed type by tag).
func appendInt(dst []byte, tag byte, n int64) []byte {
	k := 1
	for k < 8 && (n >= 0 && n >= 1<<(8*k-1) || n < 0 && n < -(1<<(8*k-1))) {
		k++
	}
	dst = append(dst, tag, byte(k))
	for i := k - 1; i >= 0; i-- {
		dst = append(dst, byte(n>>(8*i)))
	}
	return dst
}

// appendUint appends an unsigned type: minimal octets, a 0 pad when the
// high bit is set.
func appendUint(dst []byte, tag byte, n uint64) []byte {
	k := 1
	for k < 8 && n >= 1<<(8*k) {
		k++
	}
	pad := n>>(8*k-1)&1 == 1
	l := k
	if pad {
		l++
	}
	dst = append(dst, tag, byte(l))
	if pad {
		dst = append(dst, 0)
	}
	for i := k - 1; i >= 0; i-- {
		dst = append(dst, byte(n>>(8*i)))
	}
	return dst
}
