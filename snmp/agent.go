package snmp

// DefaultMaxSize is the largest response the agent sends when the request
// does not say (v2c), as net-snmp's: an Ethernet MTU less the IP and UDP
// headers, so that a response is never fragmented.
const DefaultMaxSize = 1472

// Answer computes the response to a request PDU for a manager that may
// read view, from the snapshot t. budget is what the response's varbind
// list may take in octets (the message bound less the message around it).
// It returns the response PDU and its encoded varbinds, or ok false when
// the request gets no answer (a PDU type an agent does not answer).
//
// GET and GETNEXT that do not fit answer tooBig; GETBULK drops the
// repetitions that do not fit (RFC 3416 section 4.2.3).
func Answer(t *Table, req *PDU, view View, budget int) (resp PDU, vbs []byte, ok bool) {
	resp = PDU{Type: PDUResponse, RequestID: req.RequestID}
	switch req.Type {
	case PDUGet, PDUGetNext:
		for _, vb := range req.VarBinds {
			vbs = appendAnswer(vbs, t, vb.OID, view, req.Type == PDUGetNext)
			if len(vbs) > budget {
				return PDU{Type: PDUResponse, RequestID: req.RequestID, ErrorStatus: TooBig}, nil, true
			}
		}
		return resp, vbs, true
	case PDUGetBulk:
		vbs = bulk(t, req, view, budget)
		if len(vbs) == 0 && len(req.VarBinds) > 0 && (req.ErrorStatus > 0 || req.ErrorIndex > 0) {
			resp.ErrorStatus = TooBig // not even one varbind fits
		}
		return resp, vbs, true
	case PDUSet:
		// The agent is read-only: every object is outside a write view.
		resp.ErrorStatus, resp.ErrorIndex = NoAccess, 1
		if len(req.VarBinds) == 0 {
			resp.ErrorIndex = 0
		}
		vbs = EncodeVarBinds(req.VarBinds)
		if len(vbs) > budget {
			return PDU{Type: PDUResponse, RequestID: req.RequestID, ErrorStatus: TooBig}, nil, true
		}
		return resp, vbs, true
	}
	return resp, nil, false
}

// appendAnswer appends the varbind answering one GET or GETNEXT of o.
func appendAnswer(dst []byte, t *Table, o OID, view View, next bool) []byte {
	if next {
		if i, ok := t.next(o, view); ok {
			return append(dst, t.encoded[i]...)
		}
		return appendVarBind(dst, VarBind{OID: o, Value: exception(TagEndOfMibView)})
	}
	enc, exc := t.get(o, view)
	if enc != nil {
		return append(dst, enc...)
	}
	return appendVarBind(dst, VarBind{OID: o, Value: exception(exc)})
}

// bulk answers a GETBULK: the non-repeaters once, then up to
// max-repetitions rounds of the repeaters, as far as budget allows. A
// round in which every repeater is at the end of the view is the last.
func bulk(t *Table, req *PDU, view View, budget int) []byte {
	n := min(max(req.ErrorStatus, 0), len(req.VarBinds))
	m := max(req.ErrorIndex, 0)
	var vbs []byte
	for _, vb := range req.VarBinds[:n] {
		l := len(vbs)
		vbs = appendAnswer(vbs, t, vb.OID, view, true)
		if len(vbs) > budget {
			return vbs[:l]
		}
	}
	reps := req.VarBinds[n:]
	if len(reps) == 0 {
		return vbs
	}
	// Where each repeater stands: an index in t, or -1 at the end.
	pos := make([]int, len(reps))
	for j, vb := range reps {
		i, ok := t.next(vb.OID, view)
		if !ok {
			i = -1
		}
		pos[j] = i
	}
	for r := 0; r < m; r++ {
		allEnd := true
		for j := range reps {
			l := len(vbs)
			if pos[j] < 0 {
				last := reps[j].OID
				vbs = appendVarBind(vbs, VarBind{OID: last, Value: exception(TagEndOfMibView)})
			} else {
				allEnd = false
				vbs = append(vbs, t.encoded[pos[j]]...)
			}
			if len(vbs) > budget {
				return vbs[:l]
			}
			// Move on for the next round.
			if p := pos[j]; p >= 0 {
				cur := t.entries[p].OID
				if p+1 < len(t.entries) && view.Contains(t.entries[p+1].OID) {
					pos[j] = p + 1
				} else if i, ok := t.next(cur, view); ok {
					pos[j] = i
				} else {
					reps[j].OID = cur
					pos[j] = -1
				}
			}
		}
		if allEnd {
			break
		}
	}
	return vbs
}
