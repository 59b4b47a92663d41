package snmp

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func testEngine(t *testing.T) (*Engine, *User) {
	t.Helper()
	id := []byte{0x80, 0x01, 0x86, 0x9f, 5, 1, 2, 3, 4, 5, 6, 7, 8}
	ak, pk, err := LocalizeKeys(id, AuthSHA256, "authpass123", PrivAES128, "privpass123")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return NewEngine(id, 7, start, 1), &User{Name: "bob", Auth: AuthSHA256, AuthKey: ak, Priv: PrivAES128, PrivKey: pk}
}

// request is what a manager in time with the engine sends: a GET of
// sysName at flags.
func request(e *Engine, u *User, flags byte, now time.Time) []byte {
	p := PDU{Type: PDUGet, RequestID: 42}
	vbs := appendVarBind(nil, VarBind{OID: MustOID("1.3.6.1.2.1.1.5.0"), Value: Null()})
	return e.encode(99, flags|flagReportable, []byte(u.Name), u, &p, vbs, now)
}

// reportOID decodes a plain-text report and returns its counter's OID.
func reportOID(t *testing.T, msg []byte) (OID, *V3Header) {
	t.Helper()
	h, err := ParseV3Header(msg)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	_, _, p, err := parseScopedPDU(h.Data)
	if err != nil {
		t.Fatalf("report's scoped PDU: %v", err)
	}
	if p.Type != PDUReport || len(p.VarBinds) != 1 {
		t.Fatalf("not a report: %+v", p)
	}
	return p.VarBinds[0].OID, h
}

func TestUSM(t *testing.T) {
	e, u := testEngine(t)
	now := e.Start.Add(time.Hour)
	users := func(name string) *User {
		if name == u.Name {
			return u
		}
		return nil
	}
	tab := testTable()
	respond := func(r *ScopedRequest, budget int) (PDU, []byte, bool) { return Answer(tab, &r.PDU, Everything, budget) }

	// In time, authPriv: an encrypted, authenticated response.
	out, err := e.Handle(request(e, u, LevelAuthPriv, now), now, users, DefaultMaxSize, respond)
	if err != nil || out == nil {
		t.Fatalf("authPriv request: %v", err)
	}
	h, err := ParseV3Header(out)
	if err != nil || h.Flags != LevelAuthPriv || !e.verify(out, h, u) {
		t.Fatalf("response: flags %v, %v", h, err)
	}
	ct, _, _ := expect(h.Data, TagOctetString, "")
	pt := make([]byte, len(ct))
	aesCFB(u.PrivKey, uint32(h.Boots), uint32(h.Time), h.PrivParams, pt, ct, false)
	if _, _, p, err := parseScopedPDU(pt); err != nil || p.Type != PDUResponse || p.RequestID != 42 || string(p.VarBinds[0].Value.Bytes) != "gw1" {
		t.Fatalf("decrypted response: %+v %v", p, err)
	}

	// Discovery: no engine ID, no user.
	probe := (&Engine{ID: nil, Start: now}).encode(1, flagReportable, nil, nil, &PDU{Type: PDUGet, RequestID: 5}, nil, now)
	out, _ = e.Handle(probe, now, users, DefaultMaxSize, respond)
	if o, h := reportOID(t, out); o.String() != oidUnknownEngineIDs.String() || !bytes.Equal(h.EngineID, e.ID) || h.Boots != 7 {
		t.Errorf("discovery: %s, engine % x boots %d", o, h.EngineID, h.Boots)
	}

	// Unknown user.
	carl := *u
	carl.Name = "carl"
	out, _ = e.Handle(request(e, &carl, LevelAuthPriv, now), now, users, DefaultMaxSize, respond)
	if o, _ := reportOID(t, out); o.String() != oidUnknownUserNames.String() {
		t.Errorf("unknown user: %s", o)
	}

	// Wrong authentication key: a wrong-digest report, unauthenticated.
	bad := *u
	bad.AuthKey = bytes.Repeat([]byte{1}, len(u.AuthKey))
	out, _ = e.Handle(request(e, &bad, LevelAuthPriv, now), now, users, DefaultMaxSize, respond)
	if o, h := reportOID(t, out); o.String() != oidWrongDigests.String() || h.Flags&flagAuth != 0 {
		t.Errorf("wrong digest: %s flags %d", o, h.Flags)
	}

	// Wrong privacy key: no answer at all.
	badPriv := *u
	badPriv.PrivKey = bytes.Repeat([]byte{2}, len(u.PrivKey))
	out, err = e.Handle(request(e, &badPriv, LevelAuthPriv, now), now, users, DefaultMaxSize, respond)
	if out != nil || !errors.Is(err, ErrDecryption) {
		t.Errorf("wrong privacy key: answer %v, err %v", out != nil, err)
	}

	// A request made 200 s ago, replayed now: outside the window, an
	// authenticated report carrying the engine's boots and time.
	old := request(e, u, LevelAuthPriv, now.Add(-200*time.Second))
	out, _ = e.Handle(old, now, users, DefaultMaxSize, respond)
	o, rh := reportOID(t, out)
	if o.String() != oidNotInTimeWindows.String() || rh.Flags&flagAuth == 0 || !e.verify(out, rh, u) || rh.Time != int64(e.Time(now)) {
		t.Errorf("replay: %s flags %d time %d", o, rh.Flags, rh.Time)
	}
	// A request within the window is answered.
	if out, _ := e.Handle(request(e, u, LevelAuthPriv, now.Add(-100*time.Second)), now, users, DefaultMaxSize, respond); out == nil {
		t.Error("a request 100 s old was refused")
	}
	// One with the last boots is outside the window too.
	prev := NewEngine(e.ID, e.Boots-1, e.Start, 0)
	if o, _ := reportOID(t, mustHandle(t, e, request(prev, u, LevelAuthPriv, now), now, users, respond)); o.String() != oidNotInTimeWindows.String() {
		t.Errorf("old boots: %s", o)
	}
	// A digest flipped by one bit anywhere in the message fails.
	msg := request(e, u, LevelAuthPriv, now)
	msg[len(msg)-3] ^= 1
	if o, _ := reportOID(t, mustHandle(t, e, msg, now, users, respond)); o.String() != oidWrongDigests.String() {
		t.Errorf("altered message: %s", o)
	}
}

func mustHandle(t *testing.T, e *Engine, msg []byte, now time.Time, users func(string) *User, r Responder) []byte {
	t.Helper()
	out, err := e.Handle(msg, now, users, DefaultMaxSize, r)
	if out == nil {
		t.Fatalf("no answer: %v", err)
	}
	return out
}

// The localized keys of RFC 3414 A.3.2 (SHA-1, "maplesyrup"), RFC 7860's
// SHA-2 from the same algorithm, and the AES-256 key net-snmp extends.
func TestLocalizeKeys(t *testing.T) {
	id := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
	ak, _, err := LocalizeKeys(id, AuthSHA1, "maplesyrup", PrivNone, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x66, 0x95, 0xfe, 0xbc, 0x92, 0x88, 0xe3, 0x62, 0x82, 0x23, 0x5f, 0xc7, 0x15, 0x1f, 0x12, 0x84, 0x97, 0xb3, 0x8f, 0x3f}
	if !bytes.Equal(ak, want) {
		t.Errorf("SHA-1 key % x, want % x", ak, want)
	}
	_, pk, err := LocalizeKeys(id, AuthSHA1, "maplesyrup", PrivAES256, "maplesyrup")
	if err != nil || len(pk) != 32 || !bytes.Equal(pk[:20], want) {
		t.Errorf("AES-256 key % x (%v): the localized key, extended", pk, err)
	}
}
