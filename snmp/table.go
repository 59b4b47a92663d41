package snmp

import (
	"slices"
	"sort"
)

// Entry is one object instance the agent serves: a scalar's .0 or a table
// cell. OID[:Object] names the object (the scalar or the column), so that
// a GET of an instance that is not there can say noSuchInstance under a
// known object and noSuchObject elsewhere.
type Entry struct {
	OID    OID
	Object int
	Value  Value
}

// Scalar is the entry of a scalar object: its instance .0.
func Scalar(object OID, v Value) Entry {
	return Entry{OID: object.Append(0), Object: len(object), Value: v}
}

// Cell is the entry of a table column's instance index.
func Cell(column OID, index OID, v Value) Entry {
	return Entry{OID: column.Append(index...), Object: len(column), Value: v}
}

// Table is a snapshot of every instance the agent serves, in walk order,
// each varbind encoded once.
type Table struct {
	entries []Entry
	encoded [][]byte
}

// NewTable sorts entries into walk order; of two with one OID the first
// given wins.
func NewTable(entries []Entry) *Table {
	slices.SortStableFunc(entries, func(a, b Entry) int { return a.OID.Compare(b.OID) })
	out := entries[:0]
	for i, e := range entries {
		if i > 0 && e.OID.Compare(entries[i-1].OID) == 0 {
			continue
		}
		out = append(out, e)
	}
	t := &Table{entries: out, encoded: make([][]byte, len(out))}
	var buf []byte
	for i, e := range out {
		start := len(buf)
		buf = appendVarBind(buf, VarBind{OID: e.OID, Value: e.Value})
		t.encoded[i] = buf[start:len(buf):len(buf)]
	}
	return t
}

// Len is the number of instances.
func (t *Table) Len() int { return len(t.entries) }

// Entries are the instances in walk order (not to be changed).
func (t *Table) Entries() []Entry { return t.entries }

// search is the index of the first entry at or after o.
func (t *Table) search(o OID) int {
	return sort.Search(len(t.entries), func(i int) bool { return t.entries[i].OID.Compare(o) >= 0 })
}

// View is the set of subtrees a community or a user may read. An empty
// view admits nothing.
type View []OID

// Contains says whether o is in one of the view's subtrees.
func (v View) Contains(o OID) bool {
	for _, s := range v {
		if o.HasPrefix(s) {
			return true
		}
	}
	return false
}

// Everything is the view of the whole internet subtree.
var Everything = View{MustOID("1.3.6.1")}

// get answers a GET of o: the instance's varbind encoded, or an exception.
func (t *Table) get(o OID, view View) (enc []byte, exc byte) {
	if !view.Contains(o) {
		return nil, TagNoSuchObject
	}
	i := t.search(o)
	if i < len(t.entries) && t.entries[i].OID.Compare(o) == 0 {
		return t.encoded[i], 0
	}
	// An instance missing under a known object is noSuchInstance: the
	// object's instances surround where o would be.
	for _, j := range []int{i - 1, i} {
		if j >= 0 && j < len(t.entries) {
			e := t.entries[j]
			if o.HasPrefix(e.OID[:e.Object]) {
				return nil, TagNoSuchInstance
			}
		}
	}
	return nil, TagNoSuchObject
}

// next answers a GETNEXT of o: the first instance in the view after it,
// or ok false at the end of the view.
func (t *Table) next(o OID, view View) (i int, ok bool) {
	i = sort.Search(len(t.entries), func(k int) bool { return t.entries[k].OID.Compare(o) > 0 })
	for i < len(t.entries) {
		e := t.entries[i].OID
		if view.Contains(e) {
			return i, true
		}
		// Jump to the first view subtree after e.
		var jump OID
		for _, s := range view {
			if s.Compare(e) > 0 && (jump == nil || s.Compare(jump) < 0) {
				jump = s
			}
		}
		if jump == nil {
			return 0, false
		}
		i = t.search(jump)
	}
	return 0, false
}
