package nrpe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The NRPE wire format, as nrpe 4.1 (include/common.h) defines it. Every
// packet starts with version (int16), type (int16), CRC-32 (uint32, over
// the whole packet with this field zeroed), result code (int16). A v2
// packet then carries a 1024-byte buffer and 2 bytes of padding: 1036
// bytes in all. A v4 packet carries an int16 of alignment, an int32 buffer
// length (at most 65,536) and the buffer; check_nrpe pads a query to at
// least 1036 bytes. v3 is refused, as nrpe 4 refuses it.
const (
	Version2 = 2
	Version3 = 3
	Version4 = 4

	QueryPacket    = 1
	ResponsePacket = 2

	v2BufferLen  = 1024
	v2PacketLen  = 1036 // sizeof(v2_packet): 10 bytes of header, the buffer, 2 of padding
	commonLen    = 10   // version, type, CRC, result
	v4HeaderLen  = 16   // common, alignment, buffer length
	MaxV4Buffer  = 65536
	HelloCommand = "_NRPE_CHECK"
)

// Packet is a decoded query or response.
type Packet struct {
	Version int
	Type    int
	Result  int
	Buffer  string // up to the first NUL
}

// ErrVersion is a packet of a version this server does not speak (v1, v3,
// or garbage).
var ErrVersion = errors.New("nrpe: packet version not supported")

// ReadQuery reads one query packet from r: exactly the bytes its header
// announces, never more than 16 + 65,536. It checks the CRC and the type.
func ReadQuery(r io.Reader) (Packet, error) {
	var hdr [v4HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:commonLen]); err != nil {
		return Packet{}, fmt.Errorf("nrpe: read header: %w", err)
	}
	version := int(binary.BigEndian.Uint16(hdr[0:2]))
	var pkt []byte
	switch version {
	case Version2:
		pkt = make([]byte, v2PacketLen)
		copy(pkt, hdr[:commonLen])
		if _, err := io.ReadFull(r, pkt[commonLen:]); err != nil {
			return Packet{}, fmt.Errorf("nrpe: read v2 packet: %w", err)
		}
	case Version4:
		if _, err := io.ReadFull(r, hdr[commonLen:]); err != nil {
			return Packet{}, fmt.Errorf("nrpe: read v4 header: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[12:16])
		if n > MaxV4Buffer {
			return Packet{}, fmt.Errorf("nrpe: v4 buffer length %d is above %d", n, MaxV4Buffer)
		}
		pkt = make([]byte, v4HeaderLen+int(n))
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(r, pkt[v4HeaderLen:]); err != nil {
			return Packet{}, fmt.Errorf("nrpe: read v4 buffer: %w", err)
		}
	default:
		return Packet{}, fmt.Errorf("%w: %d", ErrVersion, version)
	}
	return DecodeQuery(pkt)
}

// DecodeQuery decodes a whole query packet, v2 or v4.
func DecodeQuery(pkt []byte) (Packet, error) {
	if len(pkt) < commonLen {
		return Packet{}, errors.New("nrpe: short packet")
	}
	p := Packet{
		Version: int(binary.BigEndian.Uint16(pkt[0:2])),
		Type:    int(binary.BigEndian.Uint16(pkt[2:4])),
		Result:  int(int16(binary.BigEndian.Uint16(pkt[8:10]))),
	}
	var buf []byte
	switch p.Version {
	case Version2:
		if len(pkt) != v2PacketLen {
			return Packet{}, fmt.Errorf("nrpe: v2 packet of %d bytes, not %d", len(pkt), v2PacketLen)
		}
		buf = pkt[commonLen : commonLen+v2BufferLen]
	case Version4:
		if len(pkt) < v4HeaderLen {
			return Packet{}, errors.New("nrpe: short v4 packet")
		}
		n := binary.BigEndian.Uint32(pkt[12:16])
		if n > MaxV4Buffer || int(n) != len(pkt)-v4HeaderLen {
			return Packet{}, fmt.Errorf("nrpe: v4 buffer length %d does not match the packet (%d bytes)", n, len(pkt))
		}
		buf = pkt[v4HeaderLen:]
	default:
		return Packet{}, fmt.Errorf("%w: %d", ErrVersion, p.Version)
	}
	if want, got := binary.BigEndian.Uint32(pkt[4:8]), checksum(pkt, p.Version); want != got {
		return Packet{}, fmt.Errorf("nrpe: CRC-32 %08x, computed %08x", want, got)
	}
	if p.Type != QueryPacket {
		return Packet{}, fmt.Errorf("nrpe: packet type %d is not a query", p.Type)
	}
	// nrpe terminates the buffer at its last byte whatever it holds.
	if len(buf) > 0 {
		buf = buf[:len(buf)-1]
	}
	for i, b := range buf {
		if b == 0 {
			buf = buf[:i]
			break
		}
	}
	p.Buffer = string(buf)
	return p, nil
}

// checksum is the CRC-32 of pkt with its CRC field (and, in v4, its
// alignment field) taken as zero.
func checksum(pkt []byte, version int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, crc32.IEEETable, pkt[:4])
	c = crc32.Update(c, crc32.IEEETable, zero[:])
	if version == Version4 {
		c = crc32.Update(c, crc32.IEEETable, pkt[8:10])
		c = crc32.Update(c, crc32.IEEETable, zero[:2])
		return crc32.Update(c, crc32.IEEETable, pkt[12:])
	}
	return crc32.Update(c, crc32.IEEETable, pkt[8:])
}

// EncodeResponse makes a response packet of the query's version: v2 is
// 1036 bytes with the text cut to 1023; v4 carries the text and its NUL
// (cut to 65,535 bytes).
func EncodeResponse(version, result int, text string) []byte {
	var pkt []byte
	switch version {
	case Version2:
		pkt = make([]byte, v2PacketLen)
		if len(text) > v2BufferLen-1 {
			text = text[:v2BufferLen-1]
		}
		copy(pkt[commonLen:], text)
	default:
		if len(text) > MaxV4Buffer-1 {
			text = text[:MaxV4Buffer-1]
		}
		pkt = make([]byte, v4HeaderLen+len(text)+1)
		binary.BigEndian.PutUint32(pkt[12:16], uint32(len(text)+1))
		copy(pkt[v4HeaderLen:], text)
	}
	binary.BigEndian.PutUint16(pkt[0:2], uint16(version))
	binary.BigEndian.PutUint16(pkt[2:4], ResponsePacket)
	binary.BigEndian.PutUint16(pkt[8:10], uint16(int16(result)))
	binary.BigEndian.PutUint32(pkt[4:8], checksum(pkt, version))
	return pkt
}

// EncodeQuery makes a query packet as check_nrpe 4.1 does (for tests and
// the benchmark): v2 of 1036 bytes, or v4 padded to at least 1036.
func EncodeQuery(version int, query string) []byte {
	var pkt []byte
	switch version {
	case Version2:
		pkt = make([]byte, v2PacketLen)
		if len(query) > v2BufferLen-1 {
			query = query[:v2BufferLen-1]
		}
		copy(pkt[commonLen:], query)
	default:
		n := max(v4HeaderLen+len(query)+1, v2PacketLen)
		pkt = make([]byte, n)
		binary.BigEndian.PutUint32(pkt[12:16], uint32(n-v4HeaderLen))
		copy(pkt[v4HeaderLen:], query)
	}
	binary.BigEndian.PutUint16(pkt[0:2], uint16(version))
	binary.BigEndian.PutUint16(pkt[2:4], QueryPacket)
	binary.BigEndian.PutUint32(pkt[4:8], checksum(pkt, version))
	return pkt
}
