package snmp

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"
)

// AuthProtocol is a USM authentication protocol.
type AuthProtocol int

// The authentication protocols: HMAC-SHA-96 (RFC 3414) and HMAC-SHA-2
// (RFC 7860).
const (
	AuthNone AuthProtocol = iota
	AuthSHA1
	AuthSHA224
	AuthSHA256
	AuthSHA384
	AuthSHA512
)

// PrivProtocol is a USM privacy protocol.
type PrivProtocol int

// The privacy protocols: AES-128 (RFC 3826) and AES-192/256 with the
// Blumenthal key extension (draft-blumenthal-aes-usm-04), as net-snmp.
const (
	PrivNone PrivProtocol = iota
	PrivAES128
	PrivAES192
	PrivAES256
)

var authInfo = map[AuthProtocol]struct {
	hash   crypto.Hash
	macLen int
	gosnmp gosnmp.SnmpV3AuthProtocol
}{
	AuthSHA1:   {crypto.SHA1, 12, gosnmp.SHA},
	AuthSHA224: {crypto.SHA224, 16, gosnmp.SHA224},
	AuthSHA256: {crypto.SHA256, 24, gosnmp.SHA256},
	AuthSHA384: {crypto.SHA384, 32, gosnmp.SHA384},
	AuthSHA512: {crypto.SHA512, 48, gosnmp.SHA512},
}

var privInfo = map[PrivProtocol]struct {
	keyLen int
	gosnmp gosnmp.SnmpV3PrivProtocol
}{
	PrivAES128: {16, gosnmp.AES},
	PrivAES192: {24, gosnmp.AES192},
	PrivAES256: {32, gosnmp.AES256},
}

// Security levels, as the msgFlags' low bits.
const (
	LevelNoAuthNoPriv = 0
	LevelAuthNoPriv   = 1
	LevelAuthPriv     = 3
)

const (
	flagAuth       = 0x01
	flagPriv       = 0x02
	flagReportable = 0x04

	securityModelUSM = 3
	timeWindow       = 150 // seconds (RFC 3414 section 3.2 step 7)
	maxEngineBoots   = 1<<31 - 1
	// MaxMessageSize is what the agent takes in: the largest UDP payload.
	MaxMessageSize = 65507
)

// User is a USM user with its keys localized to the agent's engine ID.
type User struct {
	Name    string
	Auth    AuthProtocol
	AuthKey []byte
	Priv    PrivProtocol
	PrivKey []byte
}

// Level is the highest security level the user's keys allow.
func (u *User) Level() int {
	switch {
	case u.Priv != PrivNone:
		return LevelAuthPriv
	case u.Auth != AuthNone:
		return LevelAuthNoPriv
	}
	return LevelNoAuthNoPriv
}

// LocalizeKeys turns pass phrases into the user's keys for engineID
// (RFC 3414 section 2.6, RFC 7860, and for AES-192/256 the Blumenthal
// extension of the localized key).
func LocalizeKeys(engineID []byte, auth AuthProtocol, authPass string, priv PrivProtocol, privPass string) (authKey, privKey []byte, err error) {
	if auth == AuthNone {
		return nil, nil, nil
	}
	ai, ok := authInfo[auth]
	if !ok {
		return nil, nil, fmt.Errorf("snmp: unknown authentication protocol %d", auth)
	}
	if len(authPass) < 8 || (priv != PrivNone && len(privPass) < 8) {
		return nil, nil, errors.New("snmp: a USM pass phrase has at least 8 characters")
	}
	sp := &gosnmp.UsmSecurityParameters{AuthoritativeEngineID: string(engineID), AuthenticationProtocol: ai.gosnmp,
		AuthenticationPassphrase: authPass, PrivacyProtocol: gosnmp.NoPriv}
	if priv != PrivNone {
		pi, ok := privInfo[priv]
		if !ok {
			return nil, nil, fmt.Errorf("snmp: unknown privacy protocol %d", priv)
		}
		sp.PrivacyProtocol, sp.PrivacyPassphrase = pi.gosnmp, privPass
	}
	if err := sp.InitSecurityKeys(); err != nil {
		return nil, nil, fmt.Errorf("snmp: localize keys: %w", err)
	}
	if priv != PrivNone && len(sp.PrivacyKey) != privInfo[priv].keyLen {
		return nil, nil, fmt.Errorf("snmp: privacy key of %d octets", len(sp.PrivacyKey))
	}
	return sp.SecretKey, sp.PrivacyKey, nil
}

// The usmStats and snmpMPDStats counters a report carries.
var (
	oidUnsupportedSecLevels = MustOID("1.3.6.1.6.3.15.1.1.1.0")
	oidNotInTimeWindows     = MustOID("1.3.6.1.6.3.15.1.1.2.0")
	oidUnknownUserNames     = MustOID("1.3.6.1.6.3.15.1.1.3.0")
	oidUnknownEngineIDs     = MustOID("1.3.6.1.6.3.15.1.1.4.0")
	oidWrongDigests         = MustOID("1.3.6.1.6.3.15.1.1.5.0")
	oidDecryptionErrors     = MustOID("1.3.6.1.6.3.15.1.1.6.0")
	oidUnknownContexts      = MustOID("1.3.6.1.6.3.12.1.5.0")
)

// USMStats are the USM's counters (usmStats, RFC 3414).
type USMStats struct {
	UnsupportedSecLevels, NotInTimeWindows, UnknownUserNames, UnknownEngineIDs,
	WrongDigests, DecryptionErrors, UnknownContexts atomic.Uint64
}

// Engine is the agent's SNMP engine: its ID, how often it started, and
// since when it runs (snmpEngineTime).
type Engine struct {
	ID    []byte
	Boots uint32
	Start time.Time
	Stats USMStats

	salt atomic.Uint64
	// One HMAC state per user and protocol, reused: HMAC keyed once.
	macs sync.Map // string(key) -> *sync.Pool of hash.Hash
}

// NewEngine starts an engine; salt seeds the AES salt counter (random
// in the service, fixed in tests).
func NewEngine(id []byte, boots uint32, start time.Time, salt uint64) *Engine {
	e := &Engine{ID: id, Boots: boots, Start: start}
	e.salt.Store(salt)
	return e
}

// Time is snmpEngineTime at now.
func (e *Engine) Time(now time.Time) uint32 {
	d := now.Sub(e.Start)
	if d < 0 {
		return 0
	}
	return uint32(min(d/time.Second, maxEngineBoots))
}

// ScopedRequest is an authenticated (as the level says), decrypted
// request.
type ScopedRequest struct {
	User    *User // nil: none (never for a request that gets an answer)
	Level   int
	MaxSize int // the manager's msgMaxSize
	PDU     PDU
}

// V3Header is the part of a v3 message read before security processing.
type V3Header struct {
	MsgID      int64
	MaxSize    int64
	Flags      byte
	EngineID   []byte
	Boots      int64
	Time       int64
	UserName   []byte
	AuthParams []byte
	PrivParams []byte
	Data       []byte // the msgData TLV: a ScopedPDU, or an OCTET STRING when encrypted
	authOff    int    // where AuthParams start in the message
}

// ParseV3Header reads a v3 message's header and USM security parameters,
// and nothing of its PDU.
func ParseV3Header(pkt []byte) (*V3Header, error) {
	msg, _, err := expect(pkt, TagSequence, "message")
	if err != nil {
		return nil, err
	}
	if _, msg, err = expectInt32(msg, "version", 3, 3); err != nil {
		return nil, err
	}
	global, msg, err := expect(msg, TagSequence, "msgGlobalData")
	if err != nil {
		return nil, err
	}
	h := &V3Header{}
	if h.MsgID, global, err = expectInt32(global, "msgID", 0, 1<<31-1); err != nil {
		return nil, err
	}
	if h.MaxSize, global, err = expectInt32(global, "msgMaxSize", 484, 1<<31-1); err != nil {
		return nil, err
	}
	flags, global, err := expect(global, TagOctetString, "msgFlags")
	if err != nil {
		return nil, err
	}
	if len(flags) != 1 {
		return nil, malformed("msgFlags of %d octets", len(flags))
	}
	h.Flags = flags[0]
	if h.Flags&flagPriv != 0 && h.Flags&flagAuth == 0 {
		return nil, malformed("privacy without authentication")
	}
	model, _, err := expectInt32(global, "msgSecurityModel", 1, 1<<31-1)
	if err != nil {
		return nil, err
	}
	if model != securityModelUSM {
		return nil, malformed("security model %d", model)
	}
	sp, data, err := expect(msg, TagOctetString, "msgSecurityParameters")
	if err != nil {
		return nil, err
	}
	usm, _, err := expect(sp, TagSequence, "UsmSecurityParameters")
	if err != nil {
		return nil, err
	}
	if h.EngineID, usm, err = expect(usm, TagOctetString, "msgAuthoritativeEngineID"); err != nil {
		return nil, err
	}
	if len(h.EngineID) > 32 {
		return nil, malformed("engine ID of %d octets", len(h.EngineID))
	}
	if h.Boots, usm, err = expectInt32(usm, "msgAuthoritativeEngineBoots", 0, maxEngineBoots); err != nil {
		return nil, err
	}
	if h.Time, usm, err = expectInt32(usm, "msgAuthoritativeEngineTime", 0, maxEngineBoots); err != nil {
		return nil, err
	}
	if h.UserName, usm, err = expect(usm, TagOctetString, "msgUserName"); err != nil {
		return nil, err
	}
	if len(h.UserName) > 32 {
		return nil, malformed("user name of %d octets", len(h.UserName))
	}
	if h.AuthParams, usm, err = expect(usm, TagOctetString, "msgAuthenticationParameters"); err != nil {
		return nil, err
	}
	if h.PrivParams, _, err = expect(usm, TagOctetString, "msgPrivacyParameters"); err != nil {
		return nil, err
	}
	// Every slice above is a window on pkt: the offset follows from the
	// capacities.
	h.authOff = cap(pkt) - cap(h.AuthParams)
	tag, _, rest, err := tlv(data)
	if err != nil {
		return nil, fmt.Errorf("msgData: %w", err)
	}
	if len(rest) != 0 {
		return nil, malformed("octets after msgData")
	}
	want := TagSequence
	if h.Flags&flagPriv != 0 {
		want = TagOctetString
	}
	if tag != want {
		return nil, malformed("msgData: tag 0x%02x, want 0x%02x", tag, want)
	}
	h.Data = data
	return h, nil
}

// parseScopedPDU reads a ScopedPDU.
func parseScopedPDU(b []byte) (ctxEngine, ctxName []byte, p PDU, err error) {
	s, _, err := expect(b, TagSequence, "ScopedPDU")
	if err != nil {
		return nil, nil, p, err
	}
	if ctxEngine, s, err = expect(s, TagOctetString, "contextEngineID"); err != nil {
		return nil, nil, p, err
	}
	if ctxName, s, err = expect(s, TagOctetString, "contextName"); err != nil {
		return nil, nil, p, err
	}
	p, err = parsePDU(s)
	return ctxEngine, ctxName, p, err
}

// Why a v3 message got no answer (besides a malformed one).
var (
	ErrNotReportable = errors.New("snmp: a report is due but the request is not reportable")
	ErrDecryption    = errors.New("snmp: the decrypted PDU does not parse (wrong privacy key)")
)

// Responder answers an authenticated, decrypted request within budget
// octets of varbinds (see Answer); ok false: no answer at all.
type Responder func(req *ScopedRequest, budget int) (resp PDU, vbs []byte, ok bool)

// Handle processes a v3 message as RFC 3414 section 3.2 orders it and
// returns the message to send back, or nil and why there is none. The
// HMAC is verified before anything after the security parameters is
// decoded; reports go out as net-snmp sends them. maxSize bounds the
// response besides the manager's msgMaxSize.
func (e *Engine) Handle(pkt []byte, now time.Time, users func(name string) *User, maxSize int, answer Responder) ([]byte, error) {
	h, err := ParseV3Header(pkt)
	if err != nil {
		return nil, err
	}
	report := func(oid OID, counter *atomic.Uint64, u *User, level int, requestID int32) ([]byte, error) {
		n := counter.Add(1)
		if h.Flags&flagReportable == 0 {
			return nil, ErrNotReportable
		}
		p := PDU{Type: PDUReport, RequestID: requestID}
		vbs := appendVarBind(nil, VarBind{OID: oid, Value: Counter32(n)})
		name := h.UserName
		if u != nil {
			name = []byte(u.Name)
		}
		return e.encode(h.MsgID, byte(level), name, u, &p, vbs, now), nil
	}
	// The request-id of a plain-text request, for a report before
	// authentication; 0 when it is not readable (the manager matches
	// reports by msgID).
	plainID := func() int32 {
		if h.Flags&flagAuth != 0 {
			return 0
		}
		if _, _, p, err := parseScopedPDU(h.Data); err == nil {
			return p.RequestID
		}
		return 0
	}
	if subtle.ConstantTimeCompare(h.EngineID, e.ID) != 1 {
		return report(oidUnknownEngineIDs, &e.Stats.UnknownEngineIDs, nil, LevelNoAuthNoPriv, plainID())
	}
	u := users(string(h.UserName))
	if u == nil {
		return report(oidUnknownUserNames, &e.Stats.UnknownUserNames, nil, LevelNoAuthNoPriv, plainID())
	}
	level := int(h.Flags & (flagAuth | flagPriv))
	if level > u.Level() {
		return report(oidUnsupportedSecLevels, &e.Stats.UnsupportedSecLevels, nil, LevelNoAuthNoPriv, plainID())
	}
	if level&flagAuth != 0 {
		if !e.verify(pkt, h, u) {
			return report(oidWrongDigests, &e.Stats.WrongDigests, nil, LevelNoAuthNoPriv, 0)
		}
		t := int64(e.Time(now))
		if e.Boots == maxEngineBoots || h.Boots != int64(e.Boots) || h.Time < t-timeWindow || h.Time > t+timeWindow {
			// Authenticated, so that the manager trusts the boots and
			// time it carries and resynchronises.
			return report(oidNotInTimeWindows, &e.Stats.NotInTimeWindows, u, LevelAuthNoPriv, 0)
		}
	}
	scoped := h.Data
	if level&flagPriv != 0 {
		if len(h.PrivParams) != 8 {
			return report(oidDecryptionErrors, &e.Stats.DecryptionErrors, u, LevelAuthNoPriv, 0)
		}
		ct, _, _ := expect(h.Data, TagOctetString, "encryptedPDU")
		scoped = make([]byte, len(ct))
		aesCFB(u.PrivKey, uint32(h.Boots), uint32(h.Time), h.PrivParams, scoped, ct, false)
	}
	ctxEngine, ctxName, p, err := parseScopedPDU(scoped)
	if err != nil {
		if level&flagPriv != 0 {
			return nil, ErrDecryption
		}
		return nil, err
	}
	if (len(ctxEngine) > 0 && string(ctxEngine) != string(e.ID)) || len(ctxName) > 0 {
		return report(oidUnknownContexts, &e.Stats.UnknownContexts, u, level, p.RequestID)
	}
	// The response's size: the manager's bound and ours, less what wraps
	// the varbinds (measured on an empty response, with room for every
	// length to grow).
	limit := min(int(h.MaxSize), maxSize)
	req := &ScopedRequest{User: u, Level: level, MaxSize: int(h.MaxSize), PDU: p}
	empty := PDU{Type: PDUResponse, RequestID: p.RequestID}
	budget := limit - len(e.encode(h.MsgID, byte(level), h.UserName, u, &empty, nil, now)) - 12
	resp, vbs, ok := answer(req, budget)
	if !ok {
		return nil, nil
	}
	return e.encode(h.MsgID, byte(level), h.UserName, u, &resp, vbs, now), nil
}

// verify checks the message's HMAC with the user's key, over the message
// with its authentication parameters zeroed.
func (e *Engine) verify(pkt []byte, h *V3Header, u *User) bool {
	ai := authInfo[u.Auth]
	if len(h.AuthParams) != ai.macLen {
		return false
	}
	got := append([]byte(nil), h.AuthParams...)
	buf := append([]byte(nil), pkt...)
	clear(buf[h.authOff : h.authOff+ai.macLen])
	want := e.mac(u, buf)
	return hmac.Equal(got, want[:ai.macLen])
}

// mac is the HMAC of msg with the user's key.
func (e *Engine) mac(u *User, msg []byte) []byte {
	ai := authInfo[u.Auth]
	key := string(rune(u.Auth)) + string(u.AuthKey)
	pv, ok := e.macs.Load(key)
	if !ok {
		pv, _ = e.macs.LoadOrStore(key, &sync.Pool{New: func() any { return hmac.New(ai.hash.New, u.AuthKey) }})
	}
	pool := pv.(*sync.Pool)
	m := pool.Get().(hash.Hash)
	m.Reset()
	m.Write(msg)
	sum := m.Sum(nil)
	pool.Put(m)
	return sum
}

// aesCFB en- or decrypts with AES in CFB-128 mode, the IV being the
// engine's boots and time and the salt (RFC 3826 section 3.1.2.1).
func aesCFB(key []byte, boots, engineTime uint32, salt, dst, src []byte, encrypt bool) {
	var iv [16]byte
	binary.BigEndian.PutUint32(iv[0:], boots)
	binary.BigEndian.PutUint32(iv[4:], engineTime)
	copy(iv[8:], salt)
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // the key's length was checked when it was localized
	}
	var s cipher.Stream
	if encrypt {
		s = cipher.NewCFBEncrypter(block, iv[:]) //nolint:staticcheck // RFC 3826 specifies CFB-128
	} else {
		s = cipher.NewCFBDecrypter(block, iv[:]) //nolint:staticcheck // RFC 3826 specifies CFB-128
	}
	s.XORKeyStream(dst, src)
}

// encode builds a v3 message with the agent's engine authoritative (a
// response, a report or a trap): with flags (the level, and whether it is
// reportable), for user name (u nil: not authenticated), with p and its
// encoded varbinds.
func (e *Engine) encode(msgID int64, flags byte, name []byte, u *User, p *PDU, vbs []byte, now time.Time) []byte {
	level := int(flags & (flagAuth | flagPriv))
	if u == nil {
		level, flags = LevelNoAuthNoPriv, flags&flagReportable
	}
	boots, t := e.Boots, e.Time(now)
	scoped := appendScoped(nil, e.ID, p, vbs)
	var privParams []byte
	if level&flagPriv != 0 {
		var salt [8]byte
		binary.BigEndian.PutUint64(salt[:], e.salt.Add(1))
		privParams = salt[:]
		ct := make([]byte, len(scoped))
		aesCFB(u.PrivKey, boots, t, privParams, ct, scoped, true)
		scoped = appendTLV(nil, TagOctetString, ct)
	}
	macLen := 0
	if level&flagAuth != 0 {
		macLen = authInfo[u.Auth].macLen
	}
	// USM parameters, remembering where the MAC goes.
	var usm []byte
	usm = appendTLV(usm, TagOctetString, e.ID)
	usm = appendInt(usm, TagInteger, int64(boots))
	usm = appendInt(usm, TagInteger, int64(t))
	usm = appendTLV(usm, TagOctetString, name)
	usm = appendHeader(usm, TagOctetString, macLen)
	authOff := len(usm)
	usm = append(usm, make([]byte, macLen)...)
	usm = appendTLV(usm, TagOctetString, privParams)
	usmSeq := appendTLV(nil, TagSequence, usm)
	authOff += headerLen(len(usm))

	var global []byte
	global = appendInt(global, TagInteger, msgID)
	global = appendInt(global, TagInteger, MaxMessageSize)
	global = appendTLV(global, TagOctetString, []byte{flags})
	global = appendInt(global, TagInteger, securityModelUSM)

	n := 3 + headerLen(len(global)) + len(global) + headerLen(len(usmSeq)) + len(usmSeq) + len(scoped)
	out := make([]byte, 0, n+5)
	out = appendHeader(out, TagSequence, n)
	out = appendInt(out, TagInteger, Version3)
	out = appendTLV(out, TagSequence, global)
	out = appendHeader(out, TagOctetString, len(usmSeq))
	authOff += len(out)
	out = append(out, usmSeq...)
	out = append(out, scoped...)
	if macLen > 0 {
		copy(out[authOff:], e.mac(u, out)[:macLen])
	}
	return out
}

// appendScoped appends a ScopedPDU for the agent's context.
func appendScoped(dst, engineID []byte, p *PDU, vbs []byte) []byte {
	n := headerLen(len(engineID)) + len(engineID) + 2 + pduLen(p, len(vbs))
	dst = appendHeader(dst, TagSequence, n)
	dst = appendTLV(dst, TagOctetString, engineID)
	dst = appendTLV(dst, TagOctetString, nil)
	return appendPDU(dst, p, vbs)
}
