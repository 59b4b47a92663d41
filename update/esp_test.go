package update

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// imageESP is an ESP as the disk image has it: slot a only, under the
// plain names, with the contract's entry.
func imageESP(t *testing.T) ESP {
	t.Helper()
	e := ESP{Dir: t.TempDir()}
	os.MkdirAll(filepath.Join(e.Dir, "a"), 0o755)
	os.MkdirAll(filepath.Join(e.Dir, "loader", "entries"), 0o755)
	os.WriteFile(filepath.Join(e.Dir, "a", "vmlinuz"), []byte("kernel a"), 0o644)
	os.WriteFile(filepath.Join(e.Dir, "a", "initramfs.cpio.gz"), []byte("initrd a"), 0o644)
	os.WriteFile(e.entryPath("a"), []byte("title Gatehouse cc87381 (slot a)\nversion cc87381\nlinux /a/vmlinuz\ninitrd /a/initramfs.cpio.gz\noptions console=ttyS0 panic=5 quiet gatehouse.slot=a\n"), 0o644)
	return e
}

// bundleFile builds a bundle of version with boot files made from seed.
func bundleFile(t *testing.T, version string, seed byte) (string, Manifest) {
	t.Helper()
	dir := t.TempDir()
	k, i := bootFiles(t, dir, content(seed, 1500), content(seed+1, 700))
	p := filepath.Join(dir, "bundle.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Build(f, version, 1796093552, "console=ttyS0 quiet", k, i, testKey)
	if err != nil {
		t.Fatal(err)
	}
	return p, m
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// bootable checks that slot's entry names complete files of seed's content.
func bootable(t *testing.T, e ESP, slot, version string, seed byte) {
	t.Helper()
	slots, err := e.Slots()
	if err != nil {
		t.Fatal(err)
	}
	ent, ok := slots[slot]
	if !ok || ent.Version != version {
		t.Fatalf("slot %s: %+v, want version %s", slot, ent, version)
	}
	for p, want := range map[string][]byte{ent.Linux: content(seed, 1500), ent.Initrd: content(seed+1, 700)} {
		got, err := os.ReadFile(filepath.Join(e.Dir, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("slot %s: %s is not the complete file of %s (%v)", slot, p, version, err)
		}
	}
}

func TestWriteSlot(t *testing.T) {
	e := imageESP(t)
	slots, err := e.Slots()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Entry{Version: "cc87381", Cmdline: DefaultCmdline, Linux: "/a/vmlinuz", Initrd: "/a/initramfs.cpio.gz"}); len(slots) != 1 || slots["a"] != want {
		t.Fatalf("Slots: %+v", slots)
	}
	if e.Other("a") != "b" || e.Other("b") != "a" || e.Other("") != "" {
		t.Error("Other")
	}

	p1, m1 := bundleFile(t, "v1", 10)
	if err := e.WriteSlot("b", m1, p1); err != nil {
		t.Fatal(err)
	}
	bootable(t, e, "b", "v1", 10)
	entry, _ := os.ReadFile(e.entryPath("b"))
	want := "title Gatehouse v1 (slot b)\nversion v1\nlinux /b/vmlinuz-" + m1.Files[0].SHA256[:12] +
		"\ninitrd /b/initramfs-" + m1.Files[1].SHA256[:12] + ".cpio.gz\noptions console=ttyS0 quiet gatehouse.slot=b\n"
	if string(entry) != want {
		t.Errorf("entry:\n%s\nwant\n%s", entry, want)
	}
	if got := listDir(t, filepath.Join(e.Dir, "b")); len(got) != 2 {
		t.Errorf("b holds %v", got)
	}
	if got := listDir(t, filepath.Join(e.Dir, "loader", "entries")); !slices.Equal(got, []string{"gatehouse-a.conf", "gatehouse-b.conf"}) {
		t.Errorf("entries: %v", got)
	}

	// Slot a, the image's plain names: replaced, the old files gone.
	p2, m2 := bundleFile(t, "v2", 20)
	if err := e.WriteSlot("a", m2, p2); err != nil {
		t.Fatal(err)
	}
	bootable(t, e, "a", "v2", 20)
	bootable(t, e, "b", "v1", 10)
	got := listDir(t, filepath.Join(e.Dir, "a"))
	if slices.Contains(got, "vmlinuz") || slices.Contains(got, "initramfs.cpio.gz") || len(got) != 2 {
		t.Errorf("a holds %v", got)
	}

	// The same bundle again: the same files, still bootable.
	if err := e.WriteSlot("a", m2, p2); err != nil {
		t.Fatal(err)
	}
	bootable(t, e, "a", "v2", 20)
	if again := listDir(t, filepath.Join(e.Dir, "a")); !slices.Equal(again, got) {
		t.Errorf("a holds %v, was %v", again, got)
	}

	if err := e.WriteSlot("c", m2, p2); err == nil {
		t.Error("slot c: no error")
	}
}

// TestWriteSlotInterrupted stops WriteSlot after each step: the slot
// boots the old version until the entry is replaced, the new one after.
func TestWriteSlotInterrupted(t *testing.T) {
	e := imageESP(t)
	p1, m1 := bundleFile(t, "v1", 10)
	if err := e.WriteSlot("b", m1, p1); err != nil {
		t.Fatal(err)
	}
	p2, m2 := bundleFile(t, "v2", 20)

	// Cut off while a file was being written.
	half := filepath.Join(e.Dir, "b", "vmlinuz-"+m2.Files[0].SHA256[:12]+".new")
	os.WriteFile(half, content(20, 100), 0o644)
	bootable(t, e, "b", "v1", 10)

	// Cut off after the files, before the entry.
	ent, err := e.stage("b", m2, p2)
	if err != nil {
		t.Fatal(err)
	}
	bootable(t, e, "b", "v1", 10)
	if _, err := os.Stat(half); err == nil {
		t.Error("the half-written file is still there")
	}

	// Cut off after the entry, before the old files are removed.
	if err := e.writeEntry("b", ent); err != nil {
		t.Fatal(err)
	}
	bootable(t, e, "b", "v2", 20)
	if got := listDir(t, filepath.Join(e.Dir, "b")); len(got) != 4 {
		t.Errorf("b holds %v, want the old and the new files", got)
	}

	// The next update clears what the cut-off one left.
	p3, m3 := bundleFile(t, "v3", 30)
	if err := e.WriteSlot("b", m3, p3); err != nil {
		t.Fatal(err)
	}
	bootable(t, e, "b", "v3", 30)
	if got := listDir(t, filepath.Join(e.Dir, "b")); len(got) != 2 {
		t.Errorf("b holds %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(e.Dir, "a", "vmlinuz")); string(b) != "kernel a" {
		t.Error("slot a was touched")
	}
}

// A bundle replaced after Verify: WriteSlot checks every byte against the
// verified manifest, and the slot keeps booting what it booted.
func TestWriteSlotChangedBundle(t *testing.T) {
	e := imageESP(t)
	p1, m1 := bundleFile(t, "v1", 10)
	if err := e.WriteSlot("b", m1, p1); err != nil {
		t.Fatal(err)
	}
	p2, m2 := bundleFile(t, "v2", 20)
	p3, _ := bundleFile(t, "v2", 30) // same version, other content
	err := e.WriteSlot("b", m2, p3)
	if err == nil || err.Error() != "bundle: vmlinuz: sha256 mismatch" {
		t.Fatalf("WriteSlot: %v", err)
	}
	bootable(t, e, "b", "v1", 10)
	for _, n := range listDir(t, filepath.Join(e.Dir, "b")) {
		if filepath.Ext(n) == ".new" {
			t.Errorf("left %s", n)
		}
	}
	if err := e.WriteSlot("b", m2, p2); err != nil {
		t.Fatal(err)
	}
	bootable(t, e, "b", "v2", 20)
}

func TestParseEntry(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Entry
		ok   bool
	}{
		{"title x\nversion 1\nlinux /a/vmlinuz\ninitrd /a/i\noptions  quiet  gatehouse.slot=a \n", Entry{"1", "quiet", "/a/vmlinuz", "/a/i"}, true},
		{"# comment\n\nlinux /b/k\n", Entry{Linux: "/b/k"}, true},
		{"version 1\n", Entry{}, false},
	} {
		got, err := parseEntry([]byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseEntry(%q) = %+v, %v", c.in, got, err)
		}
	}
}

func TestFindESP(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.fat")
	if err != nil {
		t.Skip("no mkfs.fat")
	}
	sys, dev := t.TempDir(), t.TempDir()
	for name, args := range map[string][]string{
		"vda1": {"-F", "32", "-n", "GH-ESP"},
		"vdb":  {"-F", "16", "-n", "OTHER"},
		"vdc":  {"-F", "16", "-n", "GH-ESP"},
	} {
		img := filepath.Join(dev, name)
		if out, err := exec.Command(mkfs, append(args, "-C", img, "40000")...).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.fat: %v\n%s", err, out)
		}
		os.Mkdir(filepath.Join(sys, name), 0o755)
	}
	os.WriteFile(filepath.Join(dev, "vda"), make([]byte, 4096), 0o644)
	os.Mkdir(filepath.Join(sys, "vda"), 0o755)
	os.Mkdir(filepath.Join(sys, "loop0"), 0o755) // no device file

	for name, want := range map[string]string{"vda1": "GH-ESP", "vdb": "OTHER", "vdc": "GH-ESP"} {
		if got, err := deviceLabel(filepath.Join(dev, name)); err != nil || got != want {
			t.Errorf("label of %s: %q, %v", name, got, err)
		}
	}
	if _, err := deviceLabel(filepath.Join(dev, "vda")); err == nil {
		t.Error("zeros have a label")
	}
	got, err := findESP(sys, dev)
	if err != nil || got != filepath.Join(dev, "vda1") {
		t.Errorf("findESP: %q, %v", got, err)
	}
	os.Remove(filepath.Join(dev, "vda1"))
	os.Remove(filepath.Join(dev, "vdc"))
	if _, err := findESP(sys, dev); err == nil {
		t.Error("findESP without one: no error")
	}
}

func FuzzParseEntry(f *testing.F) {
	f.Add([]byte("title Gatehouse v1 (slot b)\nversion v1\nlinux /b/vmlinuz-0123456789ab\ninitrd /b/initramfs-0123456789ab.cpio.gz\noptions console=ttyS0 quiet gatehouse.slot=b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ent, err := parseEntry(b)
		if err == nil && ent.Linux == "" {
			t.Fatal("an entry without a kernel")
		}
	})
}
