package snmp

import (
	"testing"
	"time"
)

// FuzzBER feeds the v1/v2c decoder and the agent: whatever it takes must
// re-encode and parse again, and the answer must parse.
func FuzzBER(f *testing.F) {
	tab := testTable()
	for _, typ := range []byte{PDUGet, PDUGetNext, PDUGetBulk, PDUSet} {
		p := PDU{Type: typ, RequestID: 1, ErrorStatus: 1, ErrorIndex: 3}
		vbs := EncodeVarBinds([]VarBind{{OID: MustOID("1.3.6.1.2.1.1.1.0"), Value: Null()}, {OID: MustOID("1.3.6.1.2.1.2"), Value: Integer(-5)}})
		f.Add(AppendCommunity(nil, Version2c, []byte("public"), &p, vbs))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseCommunity(b)
		if err != nil {
			return
		}
		again, err := ParseCommunity(AppendCommunity(nil, m.Version, m.Community, &m.PDU, EncodeVarBinds(m.PDU.VarBinds)))
		if err != nil || len(again.PDU.VarBinds) != len(m.PDU.VarBinds) {
			t.Fatalf("re-encoded message: %v", err)
		}
		resp, vbs, ok := Answer(tab, &m.PDU, Everything, DefaultMaxSize-100)
		if ok {
			if _, err := ParseCommunity(AppendCommunity(nil, m.Version, m.Community, &resp, vbs)); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
		}
	})
}

// FuzzUSM feeds the v3 header parser and the USM: nothing panics, and
// nothing but a report is answered without the key.
func FuzzUSM(f *testing.F) {
	e, u := fuzzEngine()
	now := e.Start.Add(time.Minute)
	f.Add(request(e, u, LevelAuthPriv, now))
	f.Add(request(e, u, LevelAuthNoPriv, now))
	f.Add(request(e, u, LevelNoAuthNoPriv, now))
	users := func(name string) *User {
		if name == u.Name {
			return u
		}
		return nil
	}
	tab := testTable()
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseV3Header(b)
		out, _ := e.Handle(b, now, users, DefaultMaxSize, func(r *ScopedRequest, budget int) (PDU, []byte, bool) {
			return Answer(tab, &r.PDU, Everything, budget)
		})
		if out == nil {
			return
		}
		if _, err := ParseV3Header(out); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	})
}

func fuzzEngine() (*Engine, *User) {
	id := []byte{0x80, 0x01, 0x86, 0x9f, 5, 1, 2, 3, 4, 5, 6, 7, 8}
	ak, pk, _ := LocalizeKeys(id, AuthSHA256, "authpass123", PrivAES128, "privpass123")
	return NewEngine(id, 7, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 1), &User{Name: "bob", Auth: AuthSHA256, AuthKey: ak, Priv: PrivAES128, PrivKey: pk}
}
