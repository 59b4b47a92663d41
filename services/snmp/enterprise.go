package snmp

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"gatehouse/control"
	"gatehouse/snmp"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// The enterprise subtree, as GATEHOUSE-MIB.txt describes it.
var (
	oidGhObjects   = oidEnterprise.Append(1)
	oidGhSystem    = oidGhObjects.Append(1)
	oidGhSvcEntry  = oidGhObjects.Append(2, 1)
	oidGhQueue     = oidGhObjects.Append(3)
	oidGhCollEntry = oidGhObjects.Append(4, 1)
	oidGhNTP       = oidGhObjects.Append(5)
	oidGhFirewall  = oidGhObjects.Append(6)
	oidGhCluster   = oidGhObjects.Append(7)
	oidGhClusEntry = oidGhObjects.Append(8, 1)
	oidGhNotify    = oidEnterprise.Append(2, 0)
)

// ghServicePhase's values.
var phases = map[status.Phase]int64{status.Waiting: 1, status.Starting: 2, status.Running: 3,
	status.BackingOff: 4, status.Stopping: 5, status.Stopped: 6}

// enterprise is GATEHOUSE-MIB's objects, from PID 1's status. Without
// one (the control socket unreachable) only ghStatusReachable says so.
func enterprise(e []snmp.Entry, st *control.Status, now time.Time) []snmp.Entry {
	reachable := st != nil && st.Mode != "unreachable"
	e = append(e, snmp.Scalar(oidGhSystem.Append(5), snmp.Integer(truth(reachable))))
	if !reachable {
		return e
	}
	e = append(e,
		snmp.Scalar(oidGhSystem.Append(1), snmp.String(st.Version)),
		snmp.Scalar(oidGhSystem.Append(2), snmp.String(st.Mode)),
		snmp.Scalar(oidGhSystem.Append(3), snmp.Integer(truth(st.Ready))),
		snmp.Scalar(oidGhSystem.Append(4), snmp.Gauge32(uint64(len(st.Warnings)))),
	)
	for i, s := range st.Services {
		idx := snmp.OID{uint32(i + 1)}
		up := uint64(0)
		if s.Phase == status.Running && !s.Since.IsZero() {
			up = uint64(max(now.Sub(s.Since), 0) / time.Second)
		}
		e = append(e,
			snmp.Cell(oidGhSvcEntry.Append(2), idx, snmp.String(s.Name)),
			snmp.Cell(oidGhSvcEntry.Append(3), idx, snmp.Integer(phases[s.Phase])),
			snmp.Cell(oidGhSvcEntry.Append(4), idx, snmp.Counter32(uint64(s.Restarts))),
			snmp.Cell(oidGhSvcEntry.Append(5), idx, snmp.Integer(int64(s.PID))),
			snmp.Cell(oidGhSvcEntry.Append(6), idx, snmp.String(s.Status)),
			snmp.Cell(oidGhSvcEntry.Append(7), idx, snmp.Gauge32(up)),
		)
	}
	if r, ok, err := status.Detail[status.Relay](st.Services, "smtp"); ok && err == nil {
		q := r.Queue
		e = append(e,
			snmp.Scalar(oidGhQueue.Append(1), snmp.Gauge32(uint64(q.Depth))),
			snmp.Scalar(oidGhQueue.Append(2), snmp.Gauge32(uint64(q.Deferred))),
			snmp.Scalar(oidGhQueue.Append(3), snmp.Gauge32(uint64(q.Held))),
			snmp.Scalar(oidGhQueue.Append(4), snmp.Gauge32(uint64(q.Active))),
			snmp.Scalar(oidGhQueue.Append(5), snmp.Counter64(uint64(q.Received))),
			snmp.Scalar(oidGhQueue.Append(6), snmp.Counter64(uint64(q.Delivered))),
			snmp.Scalar(oidGhQueue.Append(7), snmp.Counter64(uint64(q.Bounced))),
			snmp.Scalar(oidGhQueue.Append(8), snmp.Counter64(uint64(q.Counters.Deferred))),
			snmp.Scalar(oidGhQueue.Append(9), snmp.Counter64(uint64(r.Accepted))),
			snmp.Scalar(oidGhQueue.Append(10), snmp.Counter64(uint64(r.Rejected))),
			snmp.Scalar(oidGhQueue.Append(11), snmp.Counter64(uint64(r.AuthFailed))),
			snmp.Scalar(oidGhQueue.Append(12), snmp.Gauge32(uint64(r.Connections))),
		)
		for i, a := range r.Fetch {
			idx := snmp.OID{uint32(i + 1)}
			lastOK := uint64(0)
			if !a.LastOK.IsZero() {
				lastOK = uint64(max(now.Sub(a.LastOK), 0) / time.Second)
			}
			e = append(e,
				snmp.Cell(oidGhCollEntry.Append(2), idx, snmp.String(a.Name)),
				snmp.Cell(oidGhCollEntry.Append(3), idx, snmp.String(a.Protocol)),
				snmp.Cell(oidGhCollEntry.Append(4), idx, snmp.String(a.Server)),
				snmp.Cell(oidGhCollEntry.Append(5), idx, snmp.Counter64(uint64(a.Collected))),
				snmp.Cell(oidGhCollEntry.Append(6), idx, snmp.Gauge32(uint64(a.Failures))),
				snmp.Cell(oidGhCollEntry.Append(7), idx, snmp.String(a.LastError)),
				snmp.Cell(oidGhCollEntry.Append(8), idx, snmp.Gauge32(lastOK)),
			)
		}
	}
	if n, ok, err := status.Detail[status.NTP](st.Services, "ntp"); ok && err == nil {
		e = append(e,
			snmp.Scalar(oidGhNTP.Append(1), snmp.Integer(truth(n.Synced))),
			snmp.Scalar(oidGhNTP.Append(2), snmp.Integer(clamp32(n.Offset.Microseconds()))),
			snmp.Scalar(oidGhNTP.Append(3), snmp.String(n.Server)),
			snmp.Scalar(oidGhNTP.Append(4), snmp.Gauge32(uint64(n.Stratum))),
		)
	}
	if f, ok, err := status.Detail[status.Firewall](st.Services, "firewall"); ok && err == nil {
		ruleset := int64(3) // none
		switch f.Ruleset {
		case "config":
			ruleset = 1
		case "default-deny":
			ruleset = 2
		}
		e = append(e,
			snmp.Scalar(oidGhFirewall.Append(1), snmp.Integer(ruleset)),
			snmp.Scalar(oidGhFirewall.Append(2), snmp.String(f.Backend)),
			snmp.Scalar(oidGhFirewall.Append(3), snmp.Gauge32(uint64(len(f.In)))),
			snmp.Scalar(oidGhFirewall.Append(4), snmp.Counter32(uint64(f.Applies))),
			snmp.Scalar(oidGhFirewall.Append(5), snmp.String(f.LastError)),
			snmp.Scalar(oidGhFirewall.Append(6), snmp.Counter64(f.Drops.In.Packets)),
			snmp.Scalar(oidGhFirewall.Append(7), snmp.Counter64(f.Drops.In.Bytes)),
			snmp.Scalar(oidGhFirewall.Append(8), snmp.Counter64(f.Drops.Out.Packets)),
			snmp.Scalar(oidGhFirewall.Append(9), snmp.Counter64(f.Drops.Out.Bytes)),
		)
	}
	return e
}

func clamp32(n int64) int64 { return min(max(n, -1<<31), 1<<31-1) }

// clusterTimeout bounds a question to the cluster service: a backend that
// is not the leader asks the leader. The snapshot is rebuilt in the
// background, so a slow answer holds up none.
const clusterTimeout = 3 * time.Second

// clusterStatus is `gatehouse cluster status` from the cluster service's
// socket.
func clusterStatus(socket string) (*status.Cluster, error) {
	var resp status.ClusterResponse
	if err := sockrpc.Call(socket, clusterTimeout, status.ClusterRequest{Verb: "status"}, &resp); err != nil {
		return nil, fmt.Errorf("cluster service: %w", err)
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("cluster service: the answer has no status")
	}
	return resp.Status, nil
}

// ghClusterRole's and ghClusterNodeRole's values.
var clusterRoles = map[string]int64{"backend": 1, "frontend": 2}

// clusterGroup is GATEHOUSE-MIB's ghCluster scalars and
// ghClusterNodeTable: the cluster as this node sees it (a backend, the
// leader's view of every node; a frontend, itself).
func clusterGroup(e []snmp.Entry, c *status.Cluster) []snmp.Entry {
	problems := 0
	for _, n := range c.Nodes {
		if len(n.Problems) > 0 {
			problems++
		}
	}
	e = append(e, snmp.Scalar(oidGhCluster.Append(1), snmp.String(c.Node)))
	if r, ok := clusterRoles[c.Role]; ok {
		e = append(e, snmp.Scalar(oidGhCluster.Append(2), snmp.Integer(r)))
	}
	e = append(e,
		snmp.Scalar(oidGhCluster.Append(3), snmp.String(c.RaftState)),
		snmp.Scalar(oidGhCluster.Append(4), snmp.String(c.Leader)),
		snmp.Scalar(oidGhCluster.Append(5), snmp.Gauge32(c.Config.Version)),
		snmp.Scalar(oidGhCluster.Append(6), snmp.Gauge32(uint64(len(c.Nodes)))),
		snmp.Scalar(oidGhCluster.Append(7), snmp.Gauge32(uint64(problems))),
		snmp.Scalar(oidGhCluster.Append(8), display(c.Note)),
	)
	for i, n := range c.Nodes {
		idx := snmp.OID{uint32(i + 1)}
		age := int64(-1) // never reported
		if n.AgeS >= 0 {
			age = clamp32(int64(math.Round(n.AgeS * 1000)))
		}
		e = append(e, snmp.Cell(oidGhClusEntry.Append(2), idx, snmp.String(n.Name)))
		if r, ok := clusterRoles[n.Role]; ok {
			e = append(e, snmp.Cell(oidGhClusEntry.Append(3), idx, snmp.Integer(r)))
		}
		e = append(e,
			snmp.Cell(oidGhClusEntry.Append(4), idx, snmp.String(n.Address)),
			snmp.Cell(oidGhClusEntry.Append(5), idx, snmp.Integer(truth(n.Reachable))),
			snmp.Cell(oidGhClusEntry.Append(6), idx, snmp.Integer(age)),
			snmp.Cell(oidGhClusEntry.Append(7), idx, snmp.Gauge32(n.AppliedVersion)),
			snmp.Cell(oidGhClusEntry.Append(8), idx, snmp.Integer(clamp32(int64(math.Round(n.ClockOffsetMS))))),
			snmp.Cell(oidGhClusEntry.Append(9), idx, display(strings.Join(n.Problems, ", "))),
		)
	}
	return e
}

// display is a DisplayString: at most 255 bytes, cut at a character.
func display(s string) snmp.Value {
	if len(s) <= 255 {
		return snmp.String(s)
	}
	cut := 255
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return snmp.String(s[:cut])
}
