package snmp

import (
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/snmp"
)

// snapshotAge is how long a snapshot of the MIB serves: a walk reads one
// consistent state, and the sources (PID 1's status, netlink, /proc) are
// read about once a second however fast managers ask.
const snapshotAge = time.Second

// mib builds the agent's table of instances from the appliance's state
// and keeps the last one.
type mib struct {
	o      Options
	engine *snmp.Engine
	start  time.Time // sysUpTime counts from here: the agent's start

	sys atomic.Pointer[sysInfo]

	cur      atomic.Pointer[snapshot]
	building atomic.Bool
	mu       sync.Mutex // one build at a time

	cpu cpuLoad
}

// sysInfo is what the config says of the system group.
type sysInfo struct {
	name, contact, location string
	dataDir                 string
	cluster                 bool // a cluster node: ask the cluster service
}

type snapshot struct {
	t     *snmp.Table
	at    time.Time
	state *control.Status // the status it was built from
}

func newMIB(o Options, e *snmp.Engine) *mib {
	return &mib{o: o, engine: e, start: e.Start}
}

// configure takes the system group's strings from the config, for the
// next snapshot.
func (m *mib) configure(c *config.Config) {
	m.sys.Store(&sysInfo{name: c.SNMP.Name, contact: c.SNMP.Contact, location: c.SNMP.Location, dataDir: m.o.DataDir,
		cluster: c.Cluster != nil})
	m.rebuild(time.Now())
}

// table is the current snapshot's table. A snapshot older than
// snapshotAge is rebuilt in the background; the old one answers
// meanwhile, so that a slow source never holds up an answer.
func (m *mib) table(now time.Time) *snmp.Table {
	s := m.cur.Load()
	if s == nil {
		return m.rebuild(now).t
	}
	if now.Sub(s.at) >= snapshotAge && m.building.CompareAndSwap(false, true) {
		go func() {
			defer m.building.Store(false)
			m.rebuild(time.Now())
		}()
	}
	return s.t
}

// status is the last snapshot's view of PID 1's status (nil before one).
func (m *mib) status() *control.Status {
	if s := m.cur.Load(); s != nil {
		return s.state
	}
	return nil
}

func (m *mib) objects() int {
	if s := m.cur.Load(); s != nil {
		return s.t.Len()
	}
	return 0
}

// rebuild reads every source and puts a new snapshot in place.
func (m *mib) rebuild(now time.Time) *snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st *control.Status
	if m.o.Control != "" {
		s := control.Client{Socket: m.o.Control}.Status()
		st = &s
	}
	sys := m.sys.Load()
	var e []snmp.Entry
	e = m.systemGroup(e, sys, now)
	e = m.engineGroup(e, now)
	e = interfaces(e)
	e = hostResources(e, sys.dataDir, &m.cpu, now)
	e = loadAverages(e)
	e = enterprise(e, st, now)
	if sys.cluster && m.o.Cluster != "" {
		// Absent from this snapshot when the service does not answer.
		if c, err := clusterStatus(m.o.Cluster); err == nil {
			e = clusterGroup(e, c)
		}
	}
	if free, ok := dataFree(sys.dataDir); ok {
		e = append(e, snmp.Scalar(oidDiskFreePct, snmp.Gauge32(uint64(free))))
	}
	s := &snapshot{t: snmp.NewTable(e), at: now, state: st}
	m.cur.Store(s)
	return s
}

// OIDs of the standard groups.
var (
	oidSystem      = snmp.MustOID("1.3.6.1.2.1.1")
	oidEnterprise  = snmp.MustOID("1.3.6.1.4.1").Append(EnterpriseNumber)
	oidSysObjectID = oidEnterprise.Append(4, 1) // ghProducts.ghAppliance
	oidSnmpEngine  = snmp.MustOID("1.3.6.1.6.3.10.2.1")
	oidUsmStats    = snmp.MustOID("1.3.6.1.6.3.15.1.1")
)

// sysUpTime is the agent's uptime in hundredths of a second.
func (m *mib) sysUpTime(now time.Time) uint64 {
	return uint64(now.Sub(m.start) / (10 * time.Millisecond))
}

// systemGroup is SNMPv2-MIB's system group.
func (m *mib) systemGroup(e []snmp.Entry, sys *sysInfo, now time.Time) []snmp.Entry {
	descr := "Gatehouse email security gateway " + m.o.Version + ", Linux " + kernelRelease()
	return append(e,
		snmp.Scalar(oidSystem.Append(1), snmp.String(descr)),
		snmp.Scalar(oidSystem.Append(2), snmp.ObjectID(oidSysObjectID)),
		snmp.Scalar(oidSystem.Append(3), snmp.TimeTicks(m.sysUpTime(now))),
		snmp.Scalar(oidSystem.Append(4), snmp.String(sys.contact)),
		snmp.Scalar(oidSystem.Append(5), snmp.String(sys.name)),
		snmp.Scalar(oidSystem.Append(6), snmp.String(sys.location)),
		snmp.Scalar(oidSystem.Append(7), snmp.Integer(72)), // applications and end-to-end
	)
}

// engineGroup is SNMP-FRAMEWORK-MIB's snmpEngine group and the USM's
// counters.
func (m *mib) engineGroup(e []snmp.Entry, now time.Time) []snmp.Entry {
	en := m.engine
	e = append(e,
		snmp.Scalar(oidSnmpEngine.Append(1), snmp.Octets(en.ID)),
		snmp.Scalar(oidSnmpEngine.Append(2), snmp.Integer(int64(en.Boots))),
		snmp.Scalar(oidSnmpEngine.Append(3), snmp.Integer(int64(en.Time(now)))),
		snmp.Scalar(oidSnmpEngine.Append(4), snmp.Integer(snmp.MaxMessageSize)),
	)
	for i, c := range []*atomic.Uint64{&en.Stats.UnsupportedSecLevels, &en.Stats.NotInTimeWindows, &en.Stats.UnknownUserNames,
		&en.Stats.UnknownEngineIDs, &en.Stats.WrongDigests, &en.Stats.DecryptionErrors} {
		e = append(e, snmp.Scalar(oidUsmStats.Append(uint32(i+1)), snmp.Counter32(c.Load())))
	}
	return e
}
