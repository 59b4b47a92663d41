package snmp

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"gatehouse/snmp"
)

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

var (
	oidIfNumber  = snmp.MustOID("1.3.6.1.2.1.2.1")
	oidIfEntry   = snmp.MustOID("1.3.6.1.2.1.2.2.1")
	oidIfXEntry  = snmp.MustOID("1.3.6.1.2.1.31.1.1.1")
	oidIPForward = snmp.MustOID("1.3.6.1.2.1.4.1")
	oidIPAdEntry = snmp.MustOID("1.3.6.1.2.1.4.20.1")
	oidIPAddrEnt = snmp.MustOID("1.3.6.1.2.1.4.34.1")
)

// interfaces is IF-MIB's ifTable and ifXTable, and IP-MIB's ipAddrTable
// (IPv4) and ipAddressTable (both families), from netlink.
func interfaces(e []snmp.Entry) []snmp.Entry {
	links, err := netlink.LinkList()
	if err != nil {
		return e
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	e = append(e, snmp.Scalar(oidIfNumber, snmp.Integer(int64(len(links)))))
	for _, l := range links {
		a := l.Attrs()
		idx := snmp.OID{uint32(a.Index)}
		col := func(table snmp.OID, c uint32, v snmp.Value) snmp.Entry { return snmp.Cell(table.Append(c), idx, v) }
		admin := int64(2)
		if a.Flags&net.FlagUp != 0 {
			admin = 1
		}
		oper := map[netlink.LinkOperState]int64{netlink.OperUp: 1, netlink.OperDown: 2, netlink.OperTesting: 3,
			netlink.OperDormant: 5, netlink.OperNotPresent: 6, netlink.OperLowerLayerDown: 7}[a.OperState]
		if oper == 0 {
			oper = 4 // unknown
			if a.OperState == netlink.OperUnknown && admin == 1 && a.Flags&net.FlagLoopback != 0 {
				oper = 1 // the loopback says "unknown" while it works
			}
		}
		mbps := linkSpeed(a.Name)
		var s netlink.LinkStatistics64
		if a.Statistics != nil {
			s = netlink.LinkStatistics64(*a.Statistics)
		}
		ifType := int64(6) // ethernetCsmacd
		switch {
		case a.Flags&net.FlagLoopback != 0:
			ifType = 24 // softwareLoopback
		case l.Type() == "vlan":
			ifType = 135 // l2vlan
		case l.Type() == "bridge":
			ifType = 209
		case l.Type() == "tun" || l.Type() == "wireguard":
			ifType = 131
		}
		inUcast := s.RxPackets - min(s.RxPackets, s.Multicast)
		e = append(e,
			col(oidIfEntry, 1, snmp.Integer(int64(a.Index))),
			col(oidIfEntry, 2, snmp.String(a.Name)),
			col(oidIfEntry, 3, snmp.Integer(ifType)),
			col(oidIfEntry, 4, snmp.Integer(int64(a.MTU))),
			col(oidIfEntry, 5, snmp.Gauge32(mbps*1_000_000)),
			col(oidIfEntry, 6, snmp.Octets(a.HardwareAddr)),
			col(oidIfEntry, 7, snmp.Integer(admin)),
			col(oidIfEntry, 8, snmp.Integer(oper)),
			col(oidIfEntry, 9, snmp.TimeTicks(0)),
			col(oidIfEntry, 10, snmp.Counter32(s.RxBytes)),
			col(oidIfEntry, 11, snmp.Counter32(inUcast)),
			col(oidIfEntry, 13, snmp.Counter32(s.RxDropped)),
			col(oidIfEntry, 14, snmp.Counter32(s.RxErrors)),
			col(oidIfEntry, 15, snmp.Counter32(0)),
			col(oidIfEntry, 16, snmp.Counter32(s.TxBytes)),
			col(oidIfEntry, 17, snmp.Counter32(s.TxPackets)),
			col(oidIfEntry, 19, snmp.Counter32(s.TxDropped)),
			col(oidIfEntry, 20, snmp.Counter32(s.TxErrors)),

			col(oidIfXEntry, 1, snmp.String(a.Name)),
			col(oidIfXEntry, 2, snmp.Counter32(s.Multicast)),
			col(oidIfXEntry, 3, snmp.Counter32(0)),
			col(oidIfXEntry, 4, snmp.Counter32(0)),
			col(oidIfXEntry, 5, snmp.Counter32(0)),
			col(oidIfXEntry, 6, snmp.Counter64(s.RxBytes)),
			col(oidIfXEntry, 7, snmp.Counter64(inUcast)),
			col(oidIfXEntry, 8, snmp.Counter64(s.Multicast)),
			col(oidIfXEntry, 9, snmp.Counter64(0)),
			col(oidIfXEntry, 10, snmp.Counter64(s.TxBytes)),
			col(oidIfXEntry, 11, snmp.Counter64(s.TxPackets)),
			col(oidIfXEntry, 12, snmp.Counter64(0)),
			col(oidIfXEntry, 13, snmp.Counter64(0)),
			col(oidIfXEntry, 14, snmp.Integer(2)), // linkUpDownTrapEnable: disabled
			col(oidIfXEntry, 15, snmp.Gauge32(mbps)),
			col(oidIfXEntry, 16, snmp.Integer(truth(a.Promisc != 0))),
			col(oidIfXEntry, 17, snmp.Integer(truth(ifType == 6 && a.ParentIndex == 0))),
			col(oidIfXEntry, 18, snmp.String(a.Alias)),
			col(oidIfXEntry, 19, snmp.TimeTicks(0)),
		)
	}
	e = append(e, snmp.Scalar(oidIPForward, snmp.Integer(map[bool]int64{true: 1, false: 2}[readTrim("/proc/sys/net/ipv4/ip_forward") == "1"])))
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return e
	}
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, _ := ad.Mask.Size()
		if ip.Is4() {
			idx := oidOfBytes(ip.AsSlice())
			maskAddr, _ := netip.AddrFromSlice(net.CIDRMask(ones, 32))
			e = append(e,
				snmp.Cell(oidIPAdEntry.Append(1), idx, snmp.IPAddress(ip)),
				snmp.Cell(oidIPAdEntry.Append(2), idx, snmp.Integer(int64(ad.LinkIndex))),
				snmp.Cell(oidIPAdEntry.Append(3), idx, snmp.IPAddress(maskAddr)),
				snmp.Cell(oidIPAdEntry.Append(4), idx, snmp.Integer(1)),
				snmp.Cell(oidIPAdEntry.Append(5), idx, snmp.Integer(65535)),
			)
		}
		// ipAddressTable: InetAddressType, then the address as a
		// length-prefixed string.
		typ := uint32(1)
		if ip.Is6() {
			typ = 2
		}
		b := ip.AsSlice()
		idx := append(snmp.OID{typ, uint32(len(b))}, oidOfBytes(b)...)
		origin := int64(2) // manual
		if ad.Flags&unix.IFA_F_PERMANENT == 0 {
			origin = 4 // dhcp (or router advertisement)
		}
		if ip.IsLinkLocalUnicast() {
			origin = 6 // linklayer
		}
		e = append(e,
			snmp.Cell(oidIPAddrEnt.Append(3), idx, snmp.Integer(int64(ad.LinkIndex))),
			snmp.Cell(oidIPAddrEnt.Append(4), idx, snmp.Integer(1)), // unicast
			snmp.Cell(oidIPAddrEnt.Append(6), idx, snmp.Integer(origin)),
			snmp.Cell(oidIPAddrEnt.Append(7), idx, snmp.Integer(1)),  // preferred
			snmp.Cell(oidIPAddrEnt.Append(10), idx, snmp.Integer(1)), // active
			snmp.Cell(oidIPAddrEnt.Append(11), idx, snmp.Integer(2)), // volatile
		)
	}
	return e
}

func oidOfBytes(b []byte) snmp.OID {
	o := make(snmp.OID, len(b))
	for i, c := range b {
		o[i] = uint32(c)
	}
	return o
}

// truth is a TruthValue.
func truth(b bool) int64 {
	if b {
		return 1
	}
	return 2
}

// linkSpeed is the link's speed in Mb/s as the driver reports it (0 when
// it does not).
func linkSpeed(name string) uint64 {
	n, err := strconv.ParseInt(readTrim(filepath.Join("/sys/class/net", name, "speed")), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return uint64(n)
}

func readTrim(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

var (
	oidHrSystemUptime   = snmp.MustOID("1.3.6.1.2.1.25.1.1")
	oidHrSystemProcs    = snmp.MustOID("1.3.6.1.2.1.25.1.6")
	oidHrMemorySize     = snmp.MustOID("1.3.6.1.2.1.25.2.2")
	oidHrStorageEntry   = snmp.MustOID("1.3.6.1.2.1.25.2.3.1")
	oidHrStorageTypes   = snmp.MustOID("1.3.6.1.2.1.25.2.1")
	oidHrProcessorEntry = snmp.MustOID("1.3.6.1.2.1.25.3.3.1")
	oidLaEntry          = snmp.MustOID("1.3.6.1.4.1.2021.10.1")
)

// hostResources is HOST-RESOURCES-MIB's hrSystemUptime, hrMemorySize,
// hrStorageTable (memory, swap, the data disk) and hrProcessorTable.
func hostResources(e []snmp.Entry, dataDir string, cpu *cpuLoad, now time.Time) []snmp.Entry {
	if up, err := strconv.ParseFloat(strings.Fields(readTrim("/proc/uptime") + " 0")[0], 64); err == nil {
		e = append(e, snmp.Scalar(oidHrSystemUptime, snmp.TimeTicks(uint64(up*100))))
	}
	if procs, err := os.ReadDir("/proc"); err == nil {
		n := 0
		for _, p := range procs {
			if p.IsDir() && p.Name()[0] >= '0' && p.Name()[0] <= '9' {
				n++
			}
		}
		e = append(e, snmp.Scalar(oidHrSystemProcs, snmp.Gauge32(uint64(n))))
	}
	mem := meminfo()
	type storage struct {
		index       uint32
		typ         uint32 // under hrStorageTypes: 2 ram, 3 virtual memory, 4 fixed disk
		descr       string
		unit        uint64
		size, used  uint64 // in units
		unavailable bool
	}
	var rows []storage
	if total, ok := mem["MemTotal"]; ok {
		e = append(e, snmp.Scalar(oidHrMemorySize, snmp.Integer(int64(total))))
		rows = append(rows, storage{index: 1, typ: 2, descr: "Physical memory", unit: 1024, size: total, used: total - min(total, mem["MemAvailable"])})
	}
	if st, ok := mem["SwapTotal"]; ok && st > 0 {
		rows = append(rows, storage{index: 10, typ: 3, descr: "Swap space", unit: 1024, size: st, used: st - min(st, mem["SwapFree"])})
	}
	if dataDir != "" {
		var fs unix.Statfs_t
		if unix.Statfs(dataDir, &fs) == nil {
			rows = append(rows, storage{index: 31, typ: 4, descr: dataDir, unit: uint64(fs.Bsize), size: fs.Blocks, used: fs.Blocks - fs.Bfree})
		}
	}
	for _, r := range rows {
		idx := snmp.OID{r.index}
		// Units of at most 2^31: sizes scaled into Integer32 as net-snmp.
		unit, size, used := r.unit, r.size, r.used
		for size > 1<<31-1 {
			unit, size, used = unit*2, size/2, used/2
		}
		e = append(e,
			snmp.Cell(oidHrStorageEntry.Append(1), idx, snmp.Integer(int64(r.index))),
			snmp.Cell(oidHrStorageEntry.Append(2), idx, snmp.ObjectID(oidHrStorageTypes.Append(r.typ))),
			snmp.Cell(oidHrStorageEntry.Append(3), idx, snmp.String(r.descr)),
			snmp.Cell(oidHrStorageEntry.Append(4), idx, snmp.Integer(int64(unit))),
			snmp.Cell(oidHrStorageEntry.Append(5), idx, snmp.Integer(int64(size))),
			snmp.Cell(oidHrStorageEntry.Append(6), idx, snmp.Integer(int64(used))),
			snmp.Cell(oidHrStorageEntry.Append(7), idx, snmp.Counter32(0)),
		)
	}
	for i, load := range cpu.sample(now) {
		// net-snmp's device index of the first processor.
		idx := snmp.OID{uint32(196608 + i)}
		e = append(e,
			snmp.Cell(oidHrProcessorEntry.Append(1), idx, snmp.ObjectID(snmp.OID{0, 0})),
			snmp.Cell(oidHrProcessorEntry.Append(2), idx, snmp.Integer(int64(load))),
		)
	}
	return e
}

// meminfo is /proc/meminfo in kB.
func meminfo() map[string]uint64 {
	out := map[string]uint64{}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out[strings.TrimSuffix(f[0], ":")] = n
			}
		}
	}
	return out
}

// cpuLoad is each processor's busy share over about the last minute
// (hrProcessorLoad), from /proc/stat samples.
type cpuLoad struct {
	mu    sync.Mutex
	prev  []cpuTimes
	at    time.Time
	loads []int
}

type cpuTimes struct{ busy, total uint64 }

func (c *cpuLoad) sample(now time.Time) []int {
	cur := readCPUTimes()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prev == nil || len(c.prev) != len(cur) {
		c.prev, c.at = cur, now
		c.loads = make([]int, len(cur))
		return c.loads
	}
	if now.Sub(c.at) >= time.Second {
		for i := range cur {
			db, dt := cur[i].busy-c.prev[i].busy, cur[i].total-c.prev[i].total
			if dt > 0 {
				c.loads[i] = int(db * 100 / dt)
			}
		}
	}
	if now.Sub(c.at) >= time.Minute {
		c.prev, c.at = cur, now
	}
	return c.loads
}

func readCPUTimes() []cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	var out []cpuTimes
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var t cpuTimes
		for i, s := range f[1:] {
			n, _ := strconv.ParseUint(s, 10, 64)
			t.total += n
			if i != 3 && i != 4 { // idle, iowait
				t.busy += n
			}
		}
		out = append(out, t)
	}
	return out
}

// loadAverages is UCD-SNMP-MIB's laTable, which check_snmp_load reads.
func loadAverages(e []snmp.Entry) []snmp.Entry {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return e
	}
	for i, name := range []string{"Load-1", "Load-5", "Load-15"} {
		v, _ := strconv.ParseFloat(f[i], 64)
		idx := snmp.OID{uint32(i + 1)}
		e = append(e,
			snmp.Cell(oidLaEntry.Append(1), idx, snmp.Integer(int64(i+1))),
			snmp.Cell(oidLaEntry.Append(2), idx, snmp.String(name)),
			snmp.Cell(oidLaEntry.Append(3), idx, snmp.String(fmt.Sprintf("%.2f", v))),
			snmp.Cell(oidLaEntry.Append(4), idx, snmp.String("0.00")),
			snmp.Cell(oidLaEntry.Append(5), idx, snmp.Integer(int64(v*100+0.5))),
			snmp.Cell(oidLaEntry.Append(100), idx, snmp.Integer(0)),
			snmp.Cell(oidLaEntry.Append(101), idx, snmp.String("")),
		)
	}
	return e
}
