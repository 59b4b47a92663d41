package snmp

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"
	"golang.org/x/sys/unix"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/snmp"
	"gatehouse/status"
)

// The notifications the agent sends.
var (
	oidColdStart    = snmp.MustOID("1.3.6.1.6.3.1.1.5.1")
	oidSnmpTrapOID  = snmp.MustOID("1.3.6.1.6.3.1.1.4.1.0")
	oidServiceDown  = oidGhNotify.Append(1)
	oidServiceUp    = oidGhNotify.Append(2)
	oidQueueOver    = oidGhNotify.Append(3)
	oidNTPLostSync  = oidGhNotify.Append(4)
	oidDiskLow      = oidGhNotify.Append(5)
	oidDiskFreePct  = oidGhSystem.Append(6)
	oidSysUpTimeVal = oidSystem.Append(3, 0)
)

// trapper sends notifications to the configured receivers on the edges
// of what it watches: a service leaving or reaching running, the queue
// crossing its threshold, NTP losing sync, the data disk running low.
type trapper struct {
	log    *slog.Logger
	engine *snmp.Engine
	mib    *mib

	// What the last check saw.
	running  map[string]svcSeen
	queueHi  bool
	synced   *bool
	diskLow  bool
	sent     atomic.Uint64
	acked    atomic.Uint64 // informs the receiver acknowledged
	failed   atomic.Uint64
	mu       sync.Mutex
	lastErr  string
	inFlight sync.WaitGroup
}

func newTrapper(log *slog.Logger, e *snmp.Engine, m *mib) *trapper {
	return &trapper{log: log, engine: e, mib: m}
}

func (t *trapper) stats() (sent, acked, failed uint64, last string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent.Load(), t.acked.Load(), t.failed.Load(), t.lastErr
}

// coldStart says the agent (re)started.
func (t *trapper) coldStart(p *policy, c *config.Config) {
	t.send(p, c, []notification{{oid: oidColdStart}})
}

// check compares the appliance's state with the last check's and sends
// what changed. The first check only takes note.
func (t *trapper) check(p *policy, c *config.Config) {
	// A fresh snapshot: the one that answers requests may be as old as
	// the last request, and the edges are to be seen when they happen.
	st := t.mib.rebuild(time.Now()).state
	free, freeOK := dataFree(t.mib.o.DataDir)
	if ns := t.observe(st, c, free, freeOK); len(ns) > 0 {
		t.send(p, c, ns)
	}
}

// notification is one trap or inform to send.
type notification struct {
	oid snmp.OID
	vbs []snmp.VarBind
}

// observe takes note of the appliance's state and returns the
// notifications for the edges since the last observation. A service that
// restarted between two observations (its restart count rose) went down
// and came back: both are reported, however fast the supervisor was.
func (t *trapper) observe(st *control.Status, c *config.Config, free int, freeOK bool) []notification {
	if st == nil || st.Mode == "unreachable" {
		return nil
	}
	var out []notification
	first := t.running == nil
	running := map[string]svcSeen{}
	for i, s := range st.Services {
		up := s.Phase == status.Running
		running[s.Name] = svcSeen{up: up, restarts: s.Restarts}
		if first || s.Name == "snmp" {
			continue
		}
		was, known := t.running[s.Name]
		if !known {
			continue // a service new to the config: no edge yet
		}
		vbs := func(phase status.Phase) []snmp.VarBind {
			return []snmp.VarBind{
				{OID: oidGhSvcEntry.Append(2, uint32(i+1)), Value: snmp.String(s.Name)},
				{OID: oidGhSvcEntry.Append(3, uint32(i+1)), Value: snmp.Integer(phases[phase])},
			}
		}
		restarted := s.Restarts > was.restarts
		if was.up && (!up || restarted) {
			phase := s.Phase
			if up {
				phase = status.BackingOff // it exited and was restarted in between
			}
			out = append(out, notification{oidServiceDown, vbs(phase)})
		}
		if up && (!was.up || restarted) {
			out = append(out, notification{oidServiceUp, vbs(s.Phase)})
		}
	}
	t.running = running
	if r, ok, err := status.Detail[status.Relay](st.Services, "smtp"); ok && err == nil {
		hi := r.Queue.Depth > c.SNMP.Thresholds.QueueDepth
		if hi && !t.queueHi {
			out = append(out, notification{oidQueueOver, []snmp.VarBind{{OID: oidGhQueue.Append(1, 0), Value: snmp.Gauge32(uint64(r.Queue.Depth))}}})
		}
		t.queueHi = hi
	}
	if n, ok, err := status.Detail[status.NTP](st.Services, "ntp"); ok && err == nil {
		if t.synced != nil && *t.synced && !n.Synced {
			out = append(out, notification{oidNTPLostSync, []snmp.VarBind{{OID: oidGhNTP.Append(1, 0), Value: snmp.Integer(truth(false))}}})
		}
		s := n.Synced
		t.synced = &s
	}
	if freeOK {
		low := free < c.SNMP.Thresholds.DiskFreePercent
		if low && !t.diskLow {
			out = append(out, notification{oidDiskLow, []snmp.VarBind{{OID: oidDiskFreePct.Append(0), Value: snmp.Gauge32(uint64(free))}}})
		}
		t.diskLow = low
	}
	return out
}

// svcSeen is what a check saw of a service.
type svcSeen struct {
	up       bool
	restarts int
}

// dataFree is the share of the data disk free to use, in percent.
func dataFree(dir string) (int, bool) {
	var fs unix.Statfs_t
	if dir == "" || unix.Statfs(dir, &fs) != nil || fs.Blocks == 0 {
		return 0, false
	}
	return int(fs.Bavail * 100 / fs.Blocks), true
}

// send sends notifications to every receiver: one goroutine a receiver,
// sending them in order (a service's down before its up; an inform waits
// for its acknowledgement before the next goes).
func (t *trapper) send(p *policy, c *config.Config, ns []notification) {
	uptime := uint32(t.mib.sysUpTime(time.Now()))
	pdus := make([][]gosnmp.SnmpPDU, len(ns))
	for i, n := range ns {
		pdus[i] = []gosnmp.SnmpPDU{
			{Name: oidSysUpTimeVal.String(), Type: gosnmp.TimeTicks, Value: uptime},
			{Name: oidSnmpTrapOID.String(), Type: gosnmp.ObjectIdentifier, Value: n.oid.String()},
		}
		for _, vb := range n.vbs {
			pdus[i] = append(pdus[i], toGosnmp(vb))
		}
	}
	for _, r := range c.SNMP.Traps {
		x := &gosnmp.GoSNMP{Target: r.Host, Port: uint16(r.Port), Transport: "udp", Timeout: 2 * time.Second, Retries: 2,
			Community: r.Community, Version: gosnmp.Version2c, MaxOids: gosnmp.MaxOids}
		if r.Version == "v3" {
			u := p.users[r.User]
			if u == nil {
				continue
			}
			sp := &gosnmp.UsmSecurityParameters{UserName: u.usm.Name,
				AuthenticationProtocol: authToGosnmp[u.usm.Auth], AuthenticationPassphrase: u.authPass,
				PrivacyProtocol: privToGosnmp[u.usm.Priv], PrivacyPassphrase: u.privPass}
			if !r.Inform {
				// The agent is authoritative for its traps.
				sp.AuthoritativeEngineID = string(t.engine.ID)
				sp.AuthoritativeEngineBoots = t.engine.Boots
				sp.AuthoritativeEngineTime = t.engine.Time(time.Now())
				sp.SecretKey, sp.PrivacyKey = u.usm.AuthKey, u.usm.PrivKey
			}
			flags := gosnmp.AuthNoPriv
			if u.usm.Priv != snmp.PrivNone {
				flags = gosnmp.AuthPriv
			}
			x.Version, x.SecurityModel, x.MsgFlags, x.SecurityParameters = gosnmp.Version3, gosnmp.UserSecurityModel, flags, sp
		}
		target := r.Host + ":" + strconv.Itoa(r.Port)
		t.inFlight.Add(1)
		go func() {
			defer t.inFlight.Done()
			err := x.Connect()
			if err != nil {
				for _, n := range ns {
					t.fail(target, n.oid, err)
				}
				return
			}
			defer x.Conn.Close()
			for i, n := range ns {
				if _, err := x.SendTrap(gosnmp.SnmpTrap{Variables: pdus[i], IsInform: r.Inform}); err != nil {
					t.fail(target, n.oid, err)
					continue
				}
				t.sent.Add(1)
				if r.Inform {
					// SendTrap returns for an inform once the receiver's
					// response came: acknowledged.
					t.acked.Add(1)
					t.log.Info("snmp: inform acknowledged", "to", target, "trap", n.oid.String())
					continue
				}
				t.log.Info("snmp: notification sent", "to", target, "trap", n.oid.String())
			}
		}()
	}
}

func (t *trapper) fail(target string, trapOID snmp.OID, err error) {
	t.failed.Add(1)
	t.mu.Lock()
	t.lastErr = fmt.Sprintf("%s: %v", target, err)
	t.mu.Unlock()
	t.log.Warn("snmp: notification not sent", "to", target, "trap", trapOID.String(), "err", err)
}

var authToGosnmp = map[snmp.AuthProtocol]gosnmp.SnmpV3AuthProtocol{snmp.AuthSHA1: gosnmp.SHA, snmp.AuthSHA224: gosnmp.SHA224,
	snmp.AuthSHA256: gosnmp.SHA256, snmp.AuthSHA384: gosnmp.SHA384, snmp.AuthSHA512: gosnmp.SHA512}
var privToGosnmp = map[snmp.PrivProtocol]gosnmp.SnmpV3PrivProtocol{snmp.PrivNone: gosnmp.NoPriv, snmp.PrivAES128: gosnmp.AES,
	snmp.PrivAES192: gosnmp.AES192, snmp.PrivAES256: gosnmp.AES256}

func toGosnmp(vb snmp.VarBind) gosnmp.SnmpPDU {
	pdu := gosnmp.SnmpPDU{Name: vb.OID.String()}
	v := vb.Value
	switch v.Type {
	case snmp.TagInteger:
		pdu.Type, pdu.Value = gosnmp.Integer, int(v.Int)
	case snmp.TagOctetString:
		pdu.Type, pdu.Value = gosnmp.OctetString, string(v.Bytes)
	case snmp.TagGauge32:
		pdu.Type, pdu.Value = gosnmp.Gauge32, uint(v.Uint)
	case snmp.TagCounter32:
		pdu.Type, pdu.Value = gosnmp.Counter32, uint(v.Uint)
	case snmp.TagCounter64:
		pdu.Type, pdu.Value = gosnmp.Counter64, v.Uint
	case snmp.TagOID:
		pdu.Type, pdu.Value = gosnmp.ObjectIdentifier, v.OID.String()
	default:
		pdu.Type = gosnmp.Null
	}
	return pdu
}
