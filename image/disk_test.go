package image

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gatehouse/update"
)

// The ESP's type GUID in GPT's byte order, as the UEFI spec prints it.
func TestGUIDByteOrder(t *testing.T) {
	want := []byte{0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B}
	if !bytes.Equal(espType[:], want) {
		t.Errorf("ESP type % x, want % x", espType, want)
	}
}

func TestDiskLayout(t *testing.T) {
	for _, c := range []struct {
		size, esp int64
		want      Layout
		err       bool
	}{
		{0, 0, Layout{ESPStart: mib, ESPSize: 160 * mib, DataStart: 161 * mib, DataSize: 862 * mib}, false},
		{256 * mib, 64 * mib, Layout{ESPStart: mib, ESPSize: 64 * mib, DataStart: 65 * mib, DataSize: 190 * mib}, false},
		{170 * mib, 160 * mib, Layout{}, true}, // no room for data
		{1<<30 + 512, 0, Layout{}, true},       // not whole MiB
	} {
		got, err := DiskLayout(c.size, c.esp)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("DiskLayout(%d, %d) = %+v, %v; want %+v, error %v", c.size, c.esp, got, err, c.want, c.err)
		}
	}
}

// The GPT reads back as the spec has it: a protective MBR, both headers
// with valid CRCs pointing at each other, and identical entry arrays.
func TestGPT(t *testing.T) {
	const sectors = 64 * mib / sector
	parts := []partition{
		{typ: espType, first: 2048, end: 4096, name: "esp"},
		{typ: linuxType, first: 4096, end: sectors - 2048, name: "data"},
	}
	g, err := newGPT(sectors, parts)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.primary) != 34*sector || len(g.backup) != 33*sector {
		t.Fatalf("primary %d bytes, backup %d", len(g.primary), len(g.backup))
	}
	mbr := g.primary[:sector]
	if mbr[450] != 0xEE || mbr[510] != 0x55 || mbr[511] != 0xAA || binary.LittleEndian.Uint32(mbr[454:]) != 1 ||
		binary.LittleEndian.Uint32(mbr[458:]) != sectors-1 {
		t.Errorf("protective MBR entry % x", mbr[446:462])
	}
	check := func(name string, h, table []byte, self, alt, entriesAt uint64) {
		t.Helper()
		if string(h[:8]) != "EFI PART" {
			t.Fatalf("%s: signature %q", name, h[:8])
		}
		hc := append([]byte{}, h[:92]...)
		binary.LittleEndian.PutUint32(hc[16:], 0)
		if got := binary.LittleEndian.Uint32(h[16:]); got != crc32.ChecksumIEEE(hc) {
			t.Errorf("%s: header CRC %08x, computed %08x", name, got, crc32.ChecksumIEEE(hc))
		}
		if got := binary.LittleEndian.Uint32(h[88:]); got != crc32.ChecksumIEEE(table) {
			t.Errorf("%s: entries CRC %08x, computed %08x", name, got, crc32.ChecksumIEEE(table))
		}
		for i, want := range map[int]uint64{24: self, 32: alt, 40: 34, 48: sectors - 34, 72: entriesAt} {
			if got := binary.LittleEndian.Uint64(h[i:]); got != want {
				t.Errorf("%s: field at %d = %d, want %d", name, i, got, want)
			}
		}
	}
	table := g.primary[2*sector:]
	check("primary", g.primary[sector:2*sector], table, 1, sectors-1, 2)
	check("backup", g.backup[32*sector:], g.backup[:32*sector], sectors-1, 1, sectors-33)
	if !bytes.Equal(table, g.backup[:32*sector]) {
		t.Error("backup entries differ from the primary ones")
	}
	if !bytes.Equal(g.primary[sector+56:sector+72], g.backup[32*sector+56:32*sector+72]) {
		t.Error("the headers name different disks")
	}
	for i, p := range parts {
		e := table[i*128:]
		if !bytes.Equal(e[:16], p.typ[:]) || binary.LittleEndian.Uint64(e[32:]) != uint64(p.first) ||
			binary.LittleEndian.Uint64(e[40:]) != uint64(p.end-1) || e[56] != p.name[0] || e[57] != 0 {
			t.Errorf("entry %d: % x", i, e[:64])
		}
	}
	if _, err := newGPT(sectors, []partition{{typ: linuxType, first: 2048, end: sectors}}); err == nil {
		t.Error("a partition over the backup GPT was accepted")
	}
}

// A whole disk from stand-in files: the GPT as the system's sfdisk reads
// it, the ESP's files as mtools reads them, the data partition's ext4
// label, and holes where nothing was written.
func TestDiskImage(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy", "mmd", "mtype", "mkfs.ext4", "sfdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (make deps installs it)", tool, err)
		}
	}
	dir := t.TempDir()
	for name, content := range map[string]string{"BOOTX64.EFI": "MZ loader", "vmlinuz": "MZ kernel", "initramfs.cpio.gz": "initrd"} {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	out := filepath.Join(dir, "disk.img")
	spec := DiskSpec{
		Size: 256 * mib, ESPSize: 64 * mib,
		Bootloader: filepath.Join(dir, "BOOTX64.EFI"), Kernel: filepath.Join(dir, "vmlinuz"),
		Initramfs: filepath.Join(dir, "initramfs.cpio.gz"), Version: "v1", DataLabel: "GATEHOUSE-DATA",
	}
	if err := DiskImage(out, spec); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("sfdisk", "--verify", out).CombinedOutput(); err != nil || !strings.Contains(string(b), "No errors detected") {
		t.Errorf("sfdisk --verify: %v: %s", err, b)
	}
	b, err := exec.Command("sfdisk", "--dump", out).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v: %s", err, b)
	}
	for _, want := range []string{
		"label: gpt",
		"disk.img1 : start=        2048, size=      131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
		"disk.img2 : start=      133120, size=      389120, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("sfdisk --dump lacks %q:\n%s", want, b)
		}
	}
	for file, want := range map[string]string{
		"/EFI/BOOT/BOOTX64.EFI":            "MZ loader",
		"/loader/loader.conf":              update.LoaderConf("a"),
		"/loader/entries/gatehouse-a.conf": "title Gatehouse v1 (slot a)\nversion v1\nlinux /a/vmlinuz\ninitrd /a/initramfs.cpio.gz\noptions console=ttyS0 panic=5 quiet gatehouse.slot=a\n",
		"/a/vmlinuz":                       "MZ kernel",
		"/a/initramfs.cpio.gz":             "initrd",
	} {
		cmd := exec.Command("mtype", "-i", out+"@@1M", "::"+file)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		got, err := cmd.CombinedOutput()
		if err != nil || string(got) != want {
			t.Errorf("ESP %s: %q, %v; want %q", file, got, err, want)
		}
	}
	cmd := exec.Command("mdir", "-b", "-i", out+"@@1M", "::/b")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if got, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(got)) != 0 {
		t.Errorf("ESP /b: %q, %v; want an empty directory", got, err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 65*mib+1024); err != nil {
		t.Fatal(err)
	}
	if label := string(bytes.TrimRight(sb[0x78:0x88], "\x00")); binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 || label != "GATEHOUSE-DATA" {
		t.Errorf("data partition: magic %04x, label %q", binary.LittleEndian.Uint16(sb[0x38:]), label)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > spec.Size/4 {
		t.Errorf("disk of %d MiB takes %d MiB: not sparse", spec.Size/mib, used/mib)
	}
}

func TestDiskImageRejectsBadVersion(t *testing.T) {
	err := DiskImage(filepath.Join(t.TempDir(), "disk.img"), DiskSpec{Version: "1 2"})
	if err == nil || !strings.Contains(err.Error(), "want one word") {
		t.Errorf("got %v", err)
	}
}
