package update

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ESPLabel is the FAT volume label of the appliance's EFI system partition.
const ESPLabel = "GH-ESP"

// The boot slots: each has its directory on the ESP and its loader entry.
const (
	SlotA = "a"
	SlotB = "b"
)

// ESP is the mounted EFI system partition. Its layout:
//
//	/loader/entries/gatehouse-a.conf, gatehouse-b.conf   one entry per slot
//	/a/..., /b/...                                        each slot's kernel and initramfs
type ESP struct{ Dir string }

// An Entry is what a slot's loader entry says.
type Entry struct {
	Version string
	Cmdline string // the options without gatehouse.slot=
	Linux   string // paths on the ESP, as the entry has them: /b/vmlinuz-...
	Initrd  string
}

// Other is the slot that is not slot: where an update goes while slot runs.
// It is "" for anything but "a" or "b".
func (e ESP) Other(slot string) string {
	switch slot {
	case SlotA:
		return SlotB
	case SlotB:
		return SlotA
	}
	return ""
}

// EntryName is the file name of a slot's loader entry, as systemd-boot's
// EFI variables name it: gatehouse-b.conf.
func EntryName(slot string) string { return "gatehouse-" + slot + ".conf" }

func (e ESP) entryPath(slot string) string {
	return filepath.Join(e.Dir, "loader", "entries", EntryName(slot))
}

func checkSlot(slot string) error {
	if slot != SlotA && slot != SlotB {
		return fmt.Errorf("update: slot %q: a or b", slot)
	}
	return nil
}

// Slots reads the slots' loader entries; a slot without one is absent.
func (e ESP) Slots() (map[string]Entry, error) {
	slots := map[string]Entry{}
	for _, s := range []string{SlotA, SlotB} {
		ent, ok, err := e.readEntry(s)
		if err != nil {
			return nil, err
		}
		if ok {
			slots[s] = ent
		}
	}
	return slots, nil
}

func (e ESP) readEntry(slot string) (Entry, bool, error) {
	b, err := os.ReadFile(e.entryPath(slot))
	if errors.Is(err, os.ErrNotExist) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("update: %w", err)
	}
	ent, err := parseEntry(b)
	if err != nil {
		return Entry{}, false, fmt.Errorf("update: %s: %w", e.entryPath(slot), err)
	}
	return ent, true, nil
}

// parseEntry reads a Type 1 boot loader entry: "key value" lines.
func parseEntry(b []byte) (Entry, error) {
	var ent Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		val = strings.TrimSpace(val)
		switch key {
		case "version":
			ent.Version = val
		case "linux":
			ent.Linux = val
		case "initrd":
			ent.Initrd = val
		case "options":
			var opts []string
			for _, o := range strings.Fields(val) {
				if !strings.HasPrefix(o, "gatehouse.slot=") {
					opts = append(opts, o)
				}
			}
			ent.Cmdline = strings.Join(opts, " ")
		}
	}
	if err := sc.Err(); err != nil {
		return Entry{}, err
	}
	if ent.Linux == "" {
		return Entry{}, errors.New("no linux line")
	}
	return ent, nil
}

// render is a slot's loader entry for ent.
func render(slot string, ent Entry) []byte {
	return []byte(EntryText(slot, ent))
}

// EntryText is the systemd-boot Type 1 entry that boots slot. The slot's
// name on the command line tells PID 1 which slot it runs from. (The disk
// image's first entry is written with it too.)
func EntryText(slot string, ent Entry) string {
	return fmt.Sprintf("title Gatehouse %s (slot %s)\nversion %s\nlinux %s\ninitrd %s\noptions %s gatehouse.slot=%s\n",
		ent.Version, slot, ent.Version, ent.Linux, ent.Initrd, ent.Cmdline, slot)
}

// LoaderConfPath is systemd-boot's configuration on the ESP.
const LoaderConfPath = "loader/loader.conf"

// LoaderConf is systemd-boot's configuration with slot as the default:
// no wait and no editor, for the console is a serial line nobody watches
// at boot.
func LoaderConf(slot string) string {
	return "default " + EntryName(slot) + "\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\n"
}

// SetDefault makes slot the default in loader.conf too, not only in the
// EFI variable: firmware that loses its variables (an NVRAM reset, a VM
// without a persistent store) still boots the slot whose trial passed.
func (e ESP) SetDefault(slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return replaceFile(filepath.Join(e.Dir, LoaderConfPath), []byte(LoaderConf(slot)))
}

// WriteSlot installs the verified bundle at bundlePath, whose manifest is
// m, into slot. The slot stays bootable as it was until the very end:
//
//  1. the kernel and initramfs are written under names new to the slot's
//     directory (vmlinuz-<sha256[:12]>, each to a .new name, fsynced and
//     renamed, the file system synced), checked byte for byte against m;
//  2. the loader entry is replaced the same way: this rename is the
//     switch, and before it the old entry names the old, complete files;
//  3. the files the new entry does not name are removed.
//
// An interrupted WriteSlot leaves the old entry (or none) with its files,
// and files the next WriteSlot removes. It does not touch the other slot.
func (e ESP) WriteSlot(slot string, m Manifest, bundlePath string) error {
	ent, err := e.stage(slot, m, bundlePath)
	if err != nil {
		return err
	}
	if err := e.writeEntry(slot, ent); err != nil {
		return err
	}
	return e.prune(slot, ent)
}

// stage is step 1: the new files next to the old, and the entry naming them.
func (e ESP) stage(slot string, m Manifest, bundlePath string) (Entry, error) {
	if err := checkSlot(slot); err != nil {
		return Entry{}, err
	}
	if err := m.check(); err != nil {
		return Entry{}, err
	}
	// Leftovers of an interrupted run would crowd the 160 MiB partition.
	old, ok, err := e.readEntry(slot)
	if err != nil {
		return Entry{}, err
	}
	if !ok {
		old = Entry{}
	}
	if err := e.prune(slot, old); err != nil {
		return Entry{}, err
	}
	dir := filepath.Join(e.Dir, slot)
	if err := mkdirSynced(dir); err != nil {
		return Entry{}, err
	}
	f, err := os.Open(bundlePath)
	if err != nil {
		return Entry{}, fmt.Errorf("update: %w", err)
	}
	defer f.Close()
	tr := &tarReader{r: bufio.NewReaderSize(f, 1<<16)}
	for _, name := range []string{ManifestName, SignatureName} {
		size, err := tr.header(name)
		if err != nil {
			return Entry{}, err
		}
		if err := tr.body(name, size, io.Discard); err != nil {
			return Entry{}, err
		}
	}
	ent := Entry{Version: m.Version, Cmdline: m.Cmdline}
	for _, want := range m.Files {
		base := versioned(want)
		if err := e.stageFile(tr, filepath.Join(dir, base), want); err != nil {
			return Entry{}, err
		}
		p := path.Join("/", slot, base)
		if want.Name == KernelName {
			ent.Linux = p
		} else {
			ent.Initrd = p
		}
	}
	if err := syncFS(dir); err != nil {
		return Entry{}, fmt.Errorf("update: sync %s: %w", dir, err)
	}
	return ent, nil
}

// versioned is a boot file's name in its slot: a name the old entry
// cannot be using, unless for the very same content.
func versioned(f File) string {
	h := f.SHA256[:12]
	if f.Name == InitrdName {
		return "initramfs-" + h + ".cpio.gz"
	}
	return f.Name + "-" + h
}

// stageFile writes the next bundle member to dst, through dst.new, and
// checks it against want before the rename.
func (e ESP) stageFile(tr *tarReader, dst string, want File) error {
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	h := sha256.New()
	err = tr.member(want.Name, want.Size, io.MultiWriter(out, h))
	if err == nil && hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		err = fmt.Errorf("bundle: %s: sha256 mismatch", want.Name)
	}
	if err == nil {
		if err = out.Sync(); err != nil {
			err = fmt.Errorf("update: sync %s: %w", tmp, err)
		}
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("update: %w", cerr)
	}
	if err == nil {
		if err = os.Rename(tmp, dst); err != nil {
			err = fmt.Errorf("update: %w", err)
		}
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeEntry is step 2: the entry switches to the new files in one rename.
func (e ESP) writeEntry(slot string, ent Entry) error {
	dir := filepath.Dir(e.entryPath(slot))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	return replaceFile(e.entryPath(slot), render(slot, ent))
}

// prune is step 3: it removes from the slot's directory what keep does
// not name (FAT compares names without case).
func (e ESP) prune(slot string, keep Entry) error {
	dir := filepath.Join(e.Dir, slot)
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	removed := false
	for _, de := range des {
		if named(keep.Linux, slot, de.Name()) || named(keep.Initrd, slot, de.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		removed = true
	}
	if removed {
		if err := syncFS(dir); err != nil {
			return fmt.Errorf("update: sync %s: %w", dir, err)
		}
	}
	return nil
}

// named reports whether the entry path p is the file name in slot's directory.
func named(p, slot, name string) bool {
	return p != "" && strings.EqualFold(path.Clean("/"+p), "/"+slot+"/"+name)
}

// replaceFile replaces path with data through path.new, synced, then the
// file system synced. (FAT's rename is not journalled; it is the nearest
// to atomic the firmware's file system offers.)
func replaceFile(p string, data []byte) error {
	tmp := p + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("update: replace %s: %w", p, err)
	}
	if err := syncFS(filepath.Dir(p)); err != nil {
		return fmt.Errorf("update: replace %s: sync: %w", p, err)
	}
	return nil
}

// syncFS flushes the whole file system holding dir: the ESP, a partition
// of its own. An fsync of the directory is not enough on FAT: a rename
// writes the file's new directory entry empty, and its first cluster and
// size reach the disk only with the file's own inode, later. A power cut
// in between left a loader entry naming an initrd of no size, which the
// boot loader could not find, and the machine stopped at the firmware's
// shell (TestFirmwareUpdate, "power cut right after the write").
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = unix.Syncfs(int(d.Fd()))
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func mkdirSynced(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if err := syncFS(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("update: sync %s: %w", filepath.Dir(dir), err)
	}
	return nil
}

// FindESP is the block device holding the FAT file system labelled
// GH-ESP, found by reading each device's boot sector.
func FindESP() (string, error) {
	return findESP("/sys/class/block", "/dev")
}

func findESP(sysBlock, devDir string) (string, error) {
	names, err := filepath.Glob(filepath.Join(sysBlock, "*"))
	if err != nil {
		return "", err
	}
	for _, n := range names {
		dev := filepath.Join(devDir, filepath.Base(n))
		if l, err := deviceLabel(dev); err == nil && l == ESPLabel {
			return dev, nil
		}
	}
	return "", fmt.Errorf("update: no FAT file system labelled %s among %d block devices", ESPLabel, len(names))
}

func deviceLabel(dev string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return fatLabel(f)
}

// fatLabel reads the volume label from a FAT boot sector (FAT32's
// extended BPB, else FAT12/16's).
func fatLabel(r io.ReaderAt) (string, error) {
	b := make([]byte, 512)
	if _, err := r.ReadAt(b, 0); err != nil {
		return "", err
	}
	if b[510] != 0x55 || b[511] != 0xAA || (b[0] != 0xEB && b[0] != 0xE9) {
		return "", errors.New("not a FAT boot sector")
	}
	switch bps := int(b[11]) | int(b[12])<<8; bps {
	case 512, 1024, 2048, 4096:
	default:
		return "", errors.New("not a FAT boot sector")
	}
	var label []byte
	switch {
	case string(b[0x52:0x5a]) == "FAT32   " && b[0x42] == 0x29:
		label = b[0x47:0x52]
	case strings.HasPrefix(string(b[0x36:0x3e]), "FAT") && b[0x26] == 0x29:
		label = b[0x2b:0x36]
	default:
		return "", errors.New("no FAT volume label")
	}
	return strings.TrimRight(string(label), " \x00"), nil
}

// MountESP mounts the ESP at dir (created if absent). Nothing on it runs
// on the appliance: nosuid, nodev, noexec; names are plain ASCII.
func MountESP(dev, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("update: mount ESP: %w", err)
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount(dev, dir, "vfat", flags, "shortname=mixed,utf8=0,iocharset=ascii"); err != nil {
		return fmt.Errorf("update: mount ESP %s on %s: %w", dev, dir, err)
	}
	return nil
}
