package pid1

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode
}

// What PID 1 mounts before anything else runs.
var earlyMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620", 0o755},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", 0o755},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
}

func mountAll(ms []mount) error {
	var errs []error
	for _, m := range ms {
		if err := os.MkdirAll(m.target, m.mode); err != nil {
			errs = append(errs, fmt.Errorf("mkdir %s: %w", m.target, err))
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && err != unix.EBUSY {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	return errors.Join(errs...)
}

// DataLabel is the file system label of the data disk.
const DataLabel = "GATEHOUSE-DATA"

// dataDisk is what became of /data.
type dataDisk struct {
	device   string
	mounted  bool
	readOnly bool
	problem  string
}

// mountData mounts the ext4 file system labelled DataLabel on /data. If it
// cannot be mounted read-write it is mounted read-only; if there is none,
// /data is an empty read-only tmpfs, so nothing silently writes to RAM
// believing it persists.
//
// A disk that is there already is used at once; otherwise the search goes on
// for wait after moreDevices is closed (block drivers loaded).
func mountData(moreDevices <-chan struct{}, wait time.Duration) dataDisk {
	os.MkdirAll("/data", 0o755)
	dev, err := findByLabel(DataLabel, 0)
	if err != nil {
		<-moreDevices
		dev, err = findByLabel(DataLabel, wait)
	}
	if err != nil {
		unix.Mount("tmpfs", "/data", "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64k")
		return dataDisk{readOnly: true, problem: err.Error()}
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOATIME
	if err := unix.Mount(dev, "/data", "ext4", flags, ""); err == nil {
		return dataDisk{device: dev, mounted: true}
	} else if err2 := unix.Mount(dev, "/data", "ext4", flags|unix.MS_RDONLY, ""); err2 == nil {
		return dataDisk{device: dev, mounted: true, readOnly: true,
			problem: fmt.Sprintf("mount %s read-write: %v; mounted read-only", dev, err)}
	} else {
		unix.Mount("tmpfs", "/data", "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64k")
		return dataDisk{device: dev, readOnly: true, problem: fmt.Sprintf("mount %s: %v", dev, err2)}
	}
}

// findByLabel looks at every block device's ext superblock for the label,
// waiting a little for devices that are still being probed.
func findByLabel(label string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		names, _ := filepath.Glob("/sys/class/block/*")
		for _, n := range names {
			dev := "/dev/" + filepath.Base(n)
			if l, err := ext4Label(dev); err == nil && l == label {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no ext4 file system labelled %s among %d block devices", label, len(names))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ext4Label reads the volume name of an ext2/3/4 superblock.
func ext4Label(dev string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return "", err
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return "", errors.New("not ext")
	}
	name := sb[0x78 : 0x78+16]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name), nil
}

// unmountData syncs and unmounts /data, falling back to a read-only
// remount (which also leaves the journal clean) when something holds it.
func unmountData() error {
	unix.Sync()
	var err error
	for range 20 {
		if err = unix.Unmount("/data", 0); err == nil || err == unix.EINVAL {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rerr := unix.Mount("", "/data", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr != nil {
		return fmt.Errorf("unmount /data: %v; remount read-only: %w", err, rerr)
	}
	return fmt.Errorf("unmount /data: %v; remounted read-only instead", err)
}

// isMounted reports whether something is mounted at target.
func isMounted(target string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == target {
			return true
		}
	}
	return false
}
