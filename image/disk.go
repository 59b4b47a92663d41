package image

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"gatehouse/update"
)

// The boot disk: a GPT with the EFI system partition (systemd-boot and the
// two firmware slots, a and b) and the ext4 data partition PID 1 finds by
// its label. Everything is built as the calling user in plain files: no
// root, no loop devices.

// DefaultCmdline is the kernel command line of a slot's boot entry. panic=5:
// a kernel that panics reboots, so a one-shot trial of a new slot falls
// back to the default slot by itself.
const DefaultCmdline = "console=ttyS0 panic=5 quiet"

// ESPLabel is the FAT label of the EFI system partition.
const ESPLabel = "GH-ESP"

const (
	sector  = 512
	mib     = 1 << 20
	entries = 128 // GPT partition entries, 128 bytes each: 32 sectors
	// entrySectors is the size of one copy of the partition entry array.
	entrySectors = entries * 128 / sector
)

// GPT partition type GUIDs.
var (
	espType   = mustGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	linuxType = mustGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4") // Linux file system data
)

// DiskSpec is what goes onto a boot disk.
type DiskSpec struct {
	Size       int64  // whole disk in bytes; 0 for 1 GiB
	ESPSize    int64  // EFI system partition in bytes; 0 for 160 MiB
	Bootloader string // systemd-boot's EFI binary, installed as \EFI\BOOT\BOOTX64.EFI
	Kernel     string // slot a's vmlinuz
	Initramfs  string // slot a's initramfs.cpio.gz
	Version    string // slot a's firmware version, shown in its boot entry
	Cmdline    string // slot a's kernel command line; "" for DefaultCmdline
	DataLabel  string // ext4 label of the data partition
	// DataDir, when set, is copied onto the new data partition (a config,
	// say, for a machine installed ready-made).
	DataDir string
}

// EntryPath is the ESP path of slot's boot entry, e.g. loader/entries/gatehouse-a.conf.
// The entries and loader.conf are package update's, which rewrites them.
func EntryPath(slot string) string { return "loader/entries/" + update.EntryName(slot) }

// Entry is slot's first boot entry, for the files the disk image puts in
// the slot's directory.
func Entry(slot, version, cmdline string) string {
	return update.EntryText(slot, update.Entry{Version: version, Cmdline: cmdline,
		Linux: "/" + slot + "/vmlinuz", Initrd: "/" + slot + "/initramfs.cpio.gz"})
}

// partition is one GPT entry, in sectors.
type partition struct {
	typ        [16]byte
	first, end int64 // first sector, and the sector after the last
	name       string
}

// Layout is where DiskImage puts the partitions, in bytes from the start
// of the disk.
type Layout struct {
	ESPStart, ESPSize   int64
	DataStart, DataSize int64
}

// DiskLayout places the ESP at 1 MiB and the data partition after it, up to
// the last whole MiB before the backup GPT.
func DiskLayout(size, espSize int64) (Layout, error) {
	if size == 0 {
		size = 1 << 30
	}
	if espSize == 0 {
		espSize = 160 * mib
	}
	if size%mib != 0 || espSize%mib != 0 {
		return Layout{}, fmt.Errorf("image: disk size %d and ESP size %d must be whole MiB", size, espSize)
	}
	l := Layout{ESPStart: mib, ESPSize: espSize, DataStart: mib + espSize}
	// The backup entries and header take the last 33 sectors, which the
	// last MiB holds.
	l.DataSize = size - mib - l.DataStart
	if l.DataSize < 16*mib {
		return Layout{}, fmt.Errorf("image: disk of %d MiB leaves %d MiB for data", size/mib, l.DataSize/mib)
	}
	return l, nil
}

// DiskImage writes a boot disk of spec to out, replacing it.
func DiskImage(out string, spec DiskSpec) error {
	size := spec.Size
	if size == 0 {
		size = 1 << 30
	}
	l, err := DiskLayout(size, spec.ESPSize)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".disk-")
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer os.RemoveAll(tmp)

	esp := filepath.Join(tmp, "esp.img")
	if err := espImage(esp, l.ESPSize, spec); err != nil {
		return err
	}
	data := filepath.Join(tmp, "data.img")
	if _, err := dataDiskFrom(data, spec.DataLabel, fmt.Sprintf("%dk", l.DataSize/1024), spec.DataDir); err != nil {
		return err
	}

	parts := []partition{
		{typ: espType, first: l.ESPStart / sector, end: (l.ESPStart + l.ESPSize) / sector, name: "gatehouse-esp"},
		{typ: linuxType, first: l.DataStart / sector, end: (l.DataStart + l.DataSize) / sector, name: "gatehouse-data"},
	}
	gpt, err := newGPT(size/sector, parts)
	if err != nil {
		return err
	}

	disk := filepath.Join(tmp, "disk.img")
	f, err := os.Create(disk)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	// The file starts as one hole; only what is written takes space.
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if _, err := f.WriteAt(gpt.primary, 0); err != nil {
		return fmt.Errorf("image: write GPT: %w", err)
	}
	if _, err := f.WriteAt(gpt.backup, size-int64(len(gpt.backup))); err != nil {
		return fmt.Errorf("image: write backup GPT: %w", err)
	}
	for _, c := range []struct {
		file       string
		start, max int64
	}{{esp, l.ESPStart, l.ESPSize}, {data, l.DataStart, l.DataSize}} {
		if err := copySparse(f, c.start, c.max, c.file); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return os.Rename(disk, out)
}

// espImage builds the FAT32 ESP with mkfs.vfat and fills it with mtools.
func espImage(file string, size int64, spec DiskSpec) error {
	cmdline := spec.Cmdline
	if cmdline == "" {
		cmdline = DefaultCmdline
	}
	if spec.Version == "" || strings.ContainsAny(spec.Version, " \n") {
		return fmt.Errorf("image: firmware version %q: want one word", spec.Version)
	}
	// Staged as a tree, then copied in by one mcopy.
	stage := file + ".d"
	files := map[string]string{ // ESP path -> source file
		"EFI/BOOT/BOOTX64.EFI": spec.Bootloader,
		"a/vmlinuz":            spec.Kernel,
		"a/initramfs.cpio.gz":  spec.Initramfs,
	}
	texts := map[string]string{ // ESP path -> content
		update.LoaderConfPath: update.LoaderConf("a"),
		EntryPath("a"):        Entry("a", spec.Version, cmdline),
	}
	for p, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("image: ESP %s: %w", p, err)
		}
		texts[p] = string(b)
	}
	for p, content := range texts {
		dst := filepath.Join(stage, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("image: %w", err)
		}
		if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
			return fmt.Errorf("image: %w", err)
		}
	}
	if err := run("mkfs.vfat", "-F", "32", "-n", ESPLabel, "-C", file, fmt.Sprint(size/1024)); err != nil {
		return err
	}
	if err := run("mcopy", "-i", file, "-s", "-Q",
		filepath.Join(stage, "EFI"), filepath.Join(stage, "loader"), filepath.Join(stage, "a"), "::/"); err != nil {
		return err
	}
	// Slot b's directory, for the first update to fill.
	return run("mmd", "-i", file, "::/b")
}

func run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	// mtools refuses a FAT whose geometry it finds odd unless told not to
	// check; mkfs.vfat made this one, so it is sound.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// copySparse writes file into f at off, leaving runs of zeros as holes
// (f was truncated to its size, so they read as zeros).
func copySparse(f *os.File, off, max int64, file string) error {
	src, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if st.Size() > max {
		return fmt.Errorf("image: %s: %d bytes do not fit in a partition of %d", file, st.Size(), max)
	}
	buf := make([]byte, 64*1024)
	zero := make([]byte, len(buf))
	for pos := int64(0); ; {
		n, err := io.ReadFull(src, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := f.WriteAt(buf[:n], off+pos); werr != nil {
				return fmt.Errorf("image: copy %s: %w", file, werr)
			}
		}
		pos += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("image: read %s: %w", file, err)
		}
	}
}

// gptImage is the protective MBR, primary header and entries (from sector
// 0), and the backup entries and header (the disk's last sectors).
type gptImage struct {
	primary, backup []byte
}

// newGPT lays out a GPT for a disk of sectors sectors (UEFI spec, ch. 5).
func newGPT(sectors int64, parts []partition) (gptImage, error) {
	firstUsable := int64(2 + entrySectors)
	lastUsable := sectors - 2 - entrySectors
	for _, p := range parts {
		if p.first < firstUsable || p.end-1 > lastUsable || p.end <= p.first {
			return gptImage{}, fmt.Errorf("image: partition %s (%d-%d) outside sectors %d-%d", p.name, p.first, p.end-1, firstUsable, lastUsable)
		}
	}
	table := make([]byte, entrySectors*sector)
	for i, p := range parts {
		e := table[i*128 : (i+1)*128]
		copy(e[0:16], p.typ[:])
		id, err := newGUID()
		if err != nil {
			return gptImage{}, err
		}
		copy(e[16:32], id[:])
		binary.LittleEndian.PutUint64(e[32:], uint64(p.first))
		binary.LittleEndian.PutUint64(e[40:], uint64(p.end-1))
		for j, u := range utf16.Encode([]rune(p.name)) {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	tableCRC := crc32.ChecksumIEEE(table)
	diskID, err := newGUID()
	if err != nil {
		return gptImage{}, err
	}
	header := func(self, alt, entriesAt int64) []byte {
		h := make([]byte, sector)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000) // revision 1.0
		binary.LittleEndian.PutUint32(h[12:], 92)        // header size
		binary.LittleEndian.PutUint64(h[24:], uint64(self))
		binary.LittleEndian.PutUint64(h[32:], uint64(alt))
		binary.LittleEndian.PutUint64(h[40:], uint64(firstUsable))
		binary.LittleEndian.PutUint64(h[48:], uint64(lastUsable))
		copy(h[56:72], diskID[:])
		binary.LittleEndian.PutUint64(h[72:], uint64(entriesAt))
		binary.LittleEndian.PutUint32(h[80:], entries)
		binary.LittleEndian.PutUint32(h[84:], 128)
		binary.LittleEndian.PutUint32(h[88:], tableCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	// The protective MBR: one partition of type 0xEE over the whole disk
	// (capped at what 32 bits hold), so MBR-only tools leave it alone.
	mbr := make([]byte, sector)
	pe := mbr[446:462]
	copy(pe[1:4], []byte{0x00, 0x02, 0x00}) // CHS of sector 1
	pe[4] = 0xEE
	copy(pe[5:8], []byte{0xFF, 0xFF, 0xFF})
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(sectors-1, 0xFFFFFFFF)))
	mbr[510], mbr[511] = 0x55, 0xAA

	var g gptImage
	g.primary = append(append(mbr, header(1, sectors-1, 2)...), table...)
	g.backup = append(append([]byte{}, table...), header(sectors-1, 1, sectors-1-entrySectors)...)
	return g, nil
}

// newGUID is a random (version 4) GUID in GPT's byte order.
func newGUID() ([16]byte, error) {
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return g, fmt.Errorf("image: GUID: %w", err)
	}
	g[7] = g[7]&0x0f | 0x40 // version 4 (the third field is little-endian)
	g[8] = g[8]&0x3f | 0x80 // RFC 4122 variant
	return g, nil
}

// mustGUID encodes a GUID's text form in GPT's mixed-endian byte order: the
// first three fields little-endian, the rest as written.
func mustGUID(s string) [16]byte {
	var g [16]byte
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		panic("image: bad GUID " + s)
	}
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g
}
