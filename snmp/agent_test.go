package snmp

import (
	"bytes"
	"testing"
)

func testTable() *Table {
	sys := MustOID("1.3.6.1.2.1.1")
	ifDescr := MustOID("1.3.6.1.2.1.2.2.1.2")
	return NewTable([]Entry{
		Scalar(sys.Append(5), String("gw1")),
		Scalar(sys.Append(1), String("Gatehouse")),
		Cell(ifDescr, OID{2}, String("eth0")),
		Cell(ifDescr, OID{1}, String("lo")),
		Cell(ifDescr, OID{10}, String("eth1")),
		Scalar(MustOID("1.3.6.1.4.1.99999.1.1.1"), Counter64(1<<40)),
	})
}

// answer runs one request through Answer and decodes the response's
// varbinds.
func answer(t *testing.T, tab *Table, typ byte, view View, budget int, a, b int, oids ...string) (PDU, []VarBind) {
	t.Helper()
	req := PDU{Type: typ, RequestID: 7, ErrorStatus: a, ErrorIndex: b}
	for _, o := range oids {
		req.VarBinds = append(req.VarBinds, VarBind{OID: MustOID(o), Value: Null()})
	}
	resp, vbs, ok := Answer(tab, &req, view, budget)
	if !ok {
		t.Fatal("no answer")
	}
	msg := AppendCommunity(nil, Version2c, []byte("public"), &resp, vbs)
	m, err := ParseCommunity(msg)
	if err != nil {
		t.Fatalf("response does not parse: %v", err)
	}
	return m.PDU, m.PDU.VarBinds
}

func TestGet(t *testing.T) {
	tab := testTable()
	_, vbs := answer(t, tab, PDUGet, Everything, 1400, 0, 0,
		"1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.5", "1.3.6.1.2.1.1.5.1", "1.3.6.1.2.1.1.99.0", "1.3.6.1.2.1.2.2.1.2.3", "1.3.6.1.2.1.2.2.1.2.10", "1.2.3")
	want := []byte{TagOctetString, TagNoSuchInstance, TagNoSuchInstance, TagNoSuchObject, TagNoSuchInstance, TagOctetString, TagNoSuchObject}
	for i, vb := range vbs {
		if vb.Value.Type != want[i] {
			t.Errorf("varbind %d %s: type 0x%02x, want 0x%02x", i, vb.OID, vb.Value.Type, want[i])
		}
	}
	// Outside the view: noSuchObject even where the instance exists.
	_, vbs = answer(t, tab, PDUGet, View{MustOID("1.3.6.1.2.1.2")}, 1400, 0, 0, "1.3.6.1.2.1.1.5.0")
	if vbs[0].Value.Type != TagNoSuchObject {
		t.Errorf("outside the view: 0x%02x", vbs[0].Value.Type)
	}
}

func TestWalkOrder(t *testing.T) {
	tab := testTable()
	var got []string
	o := "1.3.6"
	for range 10 {
		_, vbs := answer(t, tab, PDUGetNext, Everything, 1400, 0, 0, o)
		if vbs[0].Value.Type == TagEndOfMibView {
			break
		}
		o = vbs[0].OID.String()
		got = append(got, o)
	}
	want := []string{"1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.2.2.1.2.1", "1.3.6.1.2.1.2.2.1.2.2",
		"1.3.6.1.2.1.2.2.1.2.10", "1.3.6.1.4.1.99999.1.1.1.0"}
	if len(got) != len(want) {
		t.Fatalf("walk %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: %s, want %s", i, got[i], want[i])
		}
	}
	// A view of two subtrees skips what lies between.
	v := View{MustOID("1.3.6.1.2.1.1.5"), MustOID("1.3.6.1.4.1")}
	_, vbs := answer(t, tab, PDUGetNext, v, 1400, 0, 0, "1.3.6.1.2.1.1.5.0")
	if vbs[0].OID.String() != "1.3.6.1.4.1.99999.1.1.1.0" {
		t.Errorf("next in a view: %s", vbs[0].OID)
	}
}

func TestBulk(t *testing.T) {
	tab := testTable()
	// One non-repeater, two repeaters, 4 repetitions: the walk ends
	// after the round in which both are at the end.
	_, vbs := answer(t, tab, PDUGetBulk, Everything, 1400, 1, 4, "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.2.2.1.2.2", "1.3.6.1.4.1")
	var got []string
	for _, vb := range vbs {
		s := vb.OID.String()
		if vb.Value.Type == TagEndOfMibView {
			s += "=end"
		}
		got = append(got, s)
	}
	want := "1.3.6.1.2.1.1.5.0 1.3.6.1.2.1.2.2.1.2.10 1.3.6.1.4.1.99999.1.1.1.0 1.3.6.1.4.1.99999.1.1.1.0 1.3.6.1.4.1.99999.1.1.1.0=end 1.3.6.1.4.1.99999.1.1.1.0=end 1.3.6.1.4.1.99999.1.1.1.0=end"
	if g := join(got); g != want {
		t.Errorf("bulk:\n got %s\nwant %s", g, want)
	}
	// A small budget drops the repetitions that do not fit.
	_, vbs = answer(t, tab, PDUGetBulk, Everything, 25, 0, 50, "1.3.6")
	if len(vbs) != 1 {
		t.Errorf("budget of 25 octets: %d varbinds, want 1", len(vbs))
	}
	resp, _ := answer(t, tab, PDUGetBulk, Everything, 10, 0, 50, "1.3.6")
	if resp.ErrorStatus != TooBig {
		t.Errorf("nothing fits: error %d, want tooBig", resp.ErrorStatus)
	}
}

func TestTooBig(t *testing.T) {
	resp, vbs := answer(t, testTable(), PDUGet, Everything, 30, 0, 0, "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0")
	if resp.ErrorStatus != TooBig || len(vbs) != 0 {
		t.Errorf("error %d with %d varbinds, want tooBig and none", resp.ErrorStatus, len(vbs))
	}
}

func join(s []string) string { return string(bytes.Join(toBytes(s), []byte(" "))) }

func toBytes(s []string) [][]byte {
	var out [][]byte
	for _, x := range s {
		out = append(out, []byte(x))
	}
	return out
}

func TestBER(t *testing.T) {
	for _, n := range []int64{0, 1, 127, 128, 255, 256, -1, -128, -129, 1<<31 - 1, -1 << 31, 1 << 40} {
		b := appendInt(nil, TagInteger, n)
		_, v, _, err := tlv(b)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := parseInt(v); got != n {
			t.Errorf("int %d round-trips as %d (% x)", n, got, b)
		}
	}
	for _, n := range []uint64{0, 127, 128, 1<<32 - 1, 1 << 63, 1<<64 - 1} {
		b := appendUint(nil, TagCounter64, n)
		_, v, _, _ := tlv(b)
		if got, err := parseUint(v, 64); err != nil || got != n {
			t.Errorf("uint %d round-trips as %d, %v (% x)", n, got, err, b)
		}
	}
	for _, s := range []string{"1.3.6.1.2.1.1.1.0", "1.3.6.1.4.1.99999.4294967295", "2.999.3", "0.0"} {
		o := MustOID(s)
		b := appendOID(nil, TagOID, o)
		if len(b) != oidLen(o) {
			t.Errorf("%s: oidLen %d, encoded %d", s, oidLen(o), len(b))
		}
		_, v, _, _ := tlv(b)
		got, err := parseOID(v)
		if err != nil || got.String() != s {
			t.Errorf("OID %s round-trips as %s, %v", s, got, err)
		}
	}
	// Lengths: long forms, and what the decoder refuses.
	big := appendTLV(nil, TagOctetString, make([]byte, 300))
	if _, v, _, err := tlv(big); err != nil || len(v) != 300 {
		t.Errorf("long length: %v", err)
	}
	for _, bad := range [][]byte{{0x04}, {0x04, 0x85, 1, 0, 0, 0, 0}, {0x04, 0x05, 1}, {0x1f, 0x01, 0}, {0x04, 0x80}} {
		if _, _, _, err := tlv(bad); err == nil {
			t.Errorf("% x decoded", bad)
		}
	}
}
