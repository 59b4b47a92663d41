package snmp

import (
	"fmt"
	"net/netip"
)

// Value is a variable binding's value: Type is its BER tag, and one of the
// other fields carries it.
type Value struct {
	Type  byte
	Int   int64  // Integer
	Uint  uint64 // Counter32, Gauge32, TimeTicks, Counter64
	Bytes []byte // OctetString, IpAddress, Opaque
	OID   OID    // OID
}

// Constructors for the agent's values.
func Integer(n int64) Value    { return Value{Type: TagInteger, Int: n} }
func String(s string) Value    { return Value{Type: TagOctetString, Bytes: []byte(s)} }
func Octets(b []byte) Value    { return Value{Type: TagOctetString, Bytes: b} }
func ObjectID(o OID) Value     { return Value{Type: TagOID, OID: o} }
func Counter32(n uint64) Value { return Value{Type: TagCounter32, Uint: n & 0xffffffff} }
func Gauge32(n uint64) Value   { return Value{Type: TagGauge32, Uint: min(n, 0xffffffff)} }
func TimeTicks(n uint64) Value { return Value{Type: TagTimeTicks, Uint: n & 0xffffffff} }
func Counter64(n uint64) Value { return Value{Type: TagCounter64, Uint: n} }
func Null() Value              { return Value{Type: TagNull} }
func exception(tag byte) Value { return Value{Type: tag} }
func IPAddress(a netip.Addr) Value {
	b := a.Unmap().As4()
	return Value{Type: TagIPAddress, Bytes: b[:]}
}

// appendValue appends v's TLV.
func appendValue(dst []byte, v Value) []byte {
	switch v.Type {
	case TagInteger:
		return appendInt(dst, TagInteger, v.Int)
	case TagCounter32, TagGauge32, TagTimeTicks, TagCounter64:
		return appendUint(dst, v.Type, v.Uint)
	case TagOID:
		return appendOID(dst, TagOID, v.OID)
	case TagOctetString, TagIPAddress, TagOpaque:
		return appendTLV(dst, v.Type, v.Bytes)
	}
	return append(dst, v.Type, 0) // Null and the exceptions
}

// VarBind is one variable binding.
type VarBind struct {
	OID   OID
	Value Value
}

// appendVarBind appends the SEQUENCE of a varbind.
func appendVarBind(dst []byte, vb VarBind) []byte {
	// Encode the value after a placeholder header, then fix the length:
	// at most 3 length octets are ever needed here.
	start := len(dst)
	dst = append(dst, TagSequence, 0x82, 0, 0)
	body := len(dst)
	dst = appendOID(dst, TagOID, vb.OID)
	dst = appendValue(dst, vb.Value)
	return fixLength(dst, start, body)
}

// fixLength rewrites the 0x82-length placeholder at start for the content
// from body on, shortening the header when it can.
func fixLength(dst []byte, start, body int) []byte {
	n := len(dst) - body
	h := headerLen(n)
	if h == 4 {
		dst[start+2], dst[start+3] = byte(n>>8), byte(n)
		return dst
	}
	if h > 4 {
		// The message bound keeps every sequence below 64 KiB.
		panic("snmp: sequence beyond 64 KiB")
	}
	tag := dst[start]
	hdr := appendHeader(make([]byte, 0, 4), tag, n)
	copy(dst[start:], hdr)
	copy(dst[start+len(hdr):], dst[body:])
	return dst[:start+len(hdr)+n]
}

// PDU is a protocol data unit. For GETBULK, ErrorStatus and ErrorIndex
// carry non-repeaters and max-repetitions.
type PDU struct {
	Type        byte
	RequestID   int32
	ErrorStatus int
	ErrorIndex  int
	VarBinds    []VarBind
}

// Error statuses (RFC 3416).
const (
	NoError             = 0
	TooBig              = 1
	NoSuchName          = 2
	GenErr              = 5
	NoAccess            = 6
	NotWritable         = 17
	AuthorizationError  = 16
	ResourceUnavailable = 13
)

// parsePDU decodes a PDU (any type) from its TLV.
func parsePDU(b []byte) (PDU, error) {
	var p PDU
	tag, v, _, err := tlv(b)
	if err != nil {
		return p, fmt.Errorf("pdu: %w", err)
	}
	if tag < PDUGet || tag > PDUReport {
		return p, malformed("pdu: tag 0x%02x", tag)
	}
	p.Type = tag
	id, v, err := expectInt32(v, "request-id", -1<<31, 1<<31-1)
	if err != nil {
		return p, err
	}
	p.RequestID = int32(id)
	es, v, err := expectInt32(v, "error-status", 0, 1<<31-1)
	if err != nil {
		return p, err
	}
	ei, v, err := expectInt32(v, "error-index", 0, 1<<31-1)
	if err != nil {
		return p, err
	}
	p.ErrorStatus, p.ErrorIndex = int(es), int(ei)
	list, _, err := expect(v, TagSequence, "varbind list")
	if err != nil {
		return p, err
	}
	for len(list) > 0 {
		if len(p.VarBinds) == MaxVarBinds {
			return p, malformed("more than %d varbinds", MaxVarBinds)
		}
		var vbb []byte
		vbb, list, err = expect(list, TagSequence, "varbind")
		if err != nil {
			return p, err
		}
		ov, rest, err := expect(vbb, TagOID, "varbind name")
		if err != nil {
			return p, err
		}
		o, err := parseOID(ov)
		if err != nil {
			return p, err
		}
		val, err := parseValue(rest)
		if err != nil {
			return p, err
		}
		p.VarBinds = append(p.VarBinds, VarBind{OID: o, Value: val})
	}
	return p, nil
}

// parseValue decodes a varbind's value.
func parseValue(b []byte) (Value, error) {
	tag, v, rest, err := tlv(b)
	if err != nil {
		return Value{}, fmt.Errorf("varbind value: %w", err)
	}
	if len(rest) != 0 {
		return Value{}, malformed("varbind: trailing octets")
	}
	val := Value{Type: tag}
	switch tag {
	case TagInteger:
		val.Int, err = parseInt(v)
	case TagCounter32, TagGauge32, TagTimeTicks:
		val.Uint, err = parseUint(v, 32)
	case TagCounter64:
		val.Uint, err = parseUint(v, 64)
	case TagOctetString, TagOpaque:
		val.Bytes = v
	case TagIPAddress:
		if len(v) != 4 {
			err = malformed("IpAddress of %d octets", len(v))
		}
		val.Bytes = v
	case TagOID:
		val.OID, err = parseOID(v)
	case TagNull, TagNoSuchObject, TagNoSuchInstance, TagEndOfMibView:
		if len(v) != 0 {
			err = malformed("null with content")
		}
	default:
		err = malformed("value tag 0x%02x", tag)
	}
	return val, err
}

// appendPDU appends p with the varbinds already encoded in vbs.
func appendPDU(dst []byte, p *PDU, vbs []byte) []byte {
	n := intLen(int64(p.RequestID)) + intLen(int64(p.ErrorStatus)) + intLen(int64(p.ErrorIndex)) + headerLen(len(vbs)) + len(vbs)
	dst = appendHeader(dst, p.Type, n)
	dst = appendInt(dst, TagInteger, int64(p.RequestID))
	dst = appendInt(dst, TagInteger, int64(p.ErrorStatus))
	dst = appendInt(dst, TagInteger, int64(p.ErrorIndex))
	return appendTLV(dst, TagSequence, vbs)
}

// pduLen is the size of appendPDU's output.
func pduLen(p *PDU, vbLen int) int {
	n := intLen(int64(p.RequestID)) + intLen(int64(p.ErrorStatus)) + intLen(int64(p.ErrorIndex)) + headerLen(vbLen) + vbLen
	return headerLen(n) + n
}

// intLen is the encoded size of an INTEGER with its header.
func intLen(n int64) int {
	return len(appendInt(make([]byte, 0, 10), TagInteger, n))
}

// EncodeVarBinds encodes a varbind list's content.
func EncodeVarBinds(vbs []VarBind) []byte {
	var out []byte
	for _, vb := range vbs {
		out = appendVarBind(out, vb)
	}
	return out
}

// Community is a decoded SNMPv1/v2c message.
type Community struct {
	Version   int // 0: v1, 1: v2c
	Community []byte
	PDU       PDU
}

// Version numbers on the wire.
const (
	Version1  = 0
	Version2c = 1
	Version3  = 3
)

// MessageVersion reads the version of a message without decoding more.
func MessageVersion(b []byte) (int, error) {
	msg, _, err := expect(b, TagSequence, "message")
	if err != nil {
		return 0, err
	}
	v, _, err := expectInt32(msg, "version", 0, 3)
	return int(v), err
}

// ParseCommunity decodes an SNMPv1/v2c message.
func ParseCommunity(b []byte) (*Community, error) {
	msg, _, err := expect(b, TagSequence, "message")
	if err != nil {
		return nil, err
	}
	v, msg, err := expectInt32(msg, "version", 0, 1)
	if err != nil {
		return nil, err
	}
	comm, msg, err := expect(msg, TagOctetString, "community")
	if err != nil {
		return nil, err
	}
	p, err := parsePDU(msg)
	if err != nil {
		return nil, err
	}
	return &Community{Version: int(v), Community: comm, PDU: p}, nil
}

// AppendCommunity appends a v1/v2c message around p and its encoded
// varbinds.
func AppendCommunity(dst []byte, version int, community []byte, p *PDU, vbs []byte) []byte {
	plen := pduLen(p, len(vbs))
	n := intLen(int64(version)) + headerLen(len(community)) + len(community) + plen
	dst = appendHeader(dst, TagSequence, n)
	dst = appendInt(dst, TagInteger, int64(version))
	dst = appendTLV(dst, TagOctetString, community)
	return appendPDU(dst, p, vbs)
}
