package update

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testKey is fixed so that failures repeat.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))

func testPub() ed25519.PublicKey { return testKey.Public().(ed25519.PublicKey) }

// bootFiles writes a kernel and an initramfs of the given content into dir.
func bootFiles(t testing.TB, dir string, kernel, initrd []byte) (string, string) {
	t.Helper()
	k, i := filepath.Join(dir, "vmlinuz.in"), filepath.Join(dir, "initrd.in")
	if err := os.WriteFile(k, kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(i, initrd, 0o644); err != nil {
		t.Fatal(err)
	}
	return k, i
}

// content is size bytes that differ per seed.
func content(seed byte, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = seed + byte(i*31)
	}
	return b
}

// goodBundle builds a bundle of a 1000-byte kernel and a 3000-byte
// initramfs (neither a multiple of the block size: padding is exercised).
func goodBundle(t testing.TB) ([]byte, Manifest) {
	t.Helper()
	dir := t.TempDir()
	k, i := bootFiles(t, dir, content(1, 1000), content(2, 3000))
	var buf bytes.Buffer
	m, err := Build(&buf, "cc87381", 1796093552, "", k, i, testKey)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), m
}

func writeTemp(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	b, built := goodBundle(t)
	want := Manifest{Format: 1, Version: "cc87381", Built: 1796093552, Cmdline: DefaultCmdline, Files: []File{
		{Name: KernelName, Size: 1000, SHA256: sum(content(1, 1000))},
		{Name: InitrdName, Size: 3000, SHA256: sum(content(2, 3000))},
	}}
	if fmt.Sprint(built) != fmt.Sprint(want) {
		t.Fatalf("Build: %+v, want %+v", built, want)
	}
	p := writeTemp(t, b)
	m, err := Verify(p, testPub())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Fatalf("Verify: %+v, want %+v", m, want)
	}
	for name, c := range map[string][]byte{KernelName: content(1, 1000), InitrdName: content(2, 3000)} {
		var out bytes.Buffer
		if err := Extract(p, name, &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), c) {
			t.Errorf("Extract %s: wrong content", name)
		}
	}
	if err := Extract(p, "nope", io.Discard); err == nil {
		t.Error("Extract of no member: no error")
	}
	// The contract's manifest: these keys, in this order.
	var mj bytes.Buffer
	Extract(p, ManifestName, &mj)
	if !strings.HasPrefix(mj.String(), `{"format":1,"version":"cc87381","built":1796093552,"cmdline":"console=ttyS0 panic=5 quiet","files":[{"name":"vmlinuz","size":1000,"sha256":"`) {
		t.Errorf("manifest.json: %s", mj.String())
	}
	// Another tar reads it as the same four members.
	if tarBin, err := exec.LookPath("tar"); err == nil {
		out, err := exec.Command(tarBin, "-tf", p).CombinedOutput()
		if err != nil || string(out) != "manifest.json\nmanifest.sig\nvmlinuz\ninitramfs.cpio.gz\n" {
			t.Errorf("tar -tf: %v\n%s", err, out)
		}
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// member is one member of a hand-made archive.
type member struct {
	name string
	data []byte
	hdr  func(*tar.Header) // changes the header
}

// rawBundle makes an archive of members as given, for bundles Build
// would never make.
func rawBundle(t testing.TB, members ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: m.name, Size: int64(len(m.data)), Mode: 0o644, Format: tar.FormatUSTAR}
		if m.hdr != nil {
			m.hdr(h)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	tw.Close()
	return buf.Bytes()
}

// signed is a manifest's members, signed with testKey.
func signed(t testing.TB, m Manifest) []member {
	mj, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return []member{{name: ManifestName, data: mj}, {name: SignatureName, data: ed25519.Sign(testKey, mj)}}
}

func TestRefused(t *testing.T) {
	good, m := goodBundle(t)
	kernel, initrd := content(1, 1000), content(2, 3000)
	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 1
		return b
	}
	// Offsets in the good bundle: manifest.json's data starts after the
	// first header; the initramfs's after four headers and the padded
	// manifest, signature and kernel.
	var mj bytes.Buffer
	Extract(writeTemp(t, good), ManifestName, &mj)
	mjLen := mj.Len()
	pad := func(n int) int { return (n + 511) / 512 * 512 }
	initrdOff := 4*512 + pad(mjLen) + pad(64) + pad(1000)

	otherKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	withManifest := func(change func(*Manifest)) Manifest {
		c := m
		c.Files = append([]File(nil), m.Files...)
		change(&c)
		return c
	}
	files := []member{{name: KernelName, data: kernel}, {name: InitrdName, data: initrd}}
	cases := []struct {
		name   string
		bundle []byte
		pub    ed25519.PublicKey
		want   string
	}{
		{"tampered manifest", flip(512 + 20), nil, "bundle: signature does not verify with the given key"},
		{"tampered signature", flip(512 + pad(mjLen) + 512 + 3), nil, "bundle: signature does not verify with the given key"},
		{"tampered kernel", flip(initrdOff - 512 - pad(1000) + 999), nil, "bundle: vmlinuz: sha256 mismatch"},
		{"tampered initramfs", flip(initrdOff + 5), nil, "bundle: initramfs.cpio.gz: sha256 mismatch"},
		{"tampered header", flip(initrdOff - 512 + 100), nil, "bundle: header of initramfs.cpio.gz: checksum mismatch"},
		{"wrong key", good, otherKey.Public().(ed25519.PublicKey), "bundle: signature does not verify with the given key"},
		{"no key", good, ed25519.PublicKey{}, "bundle: no key to verify with"},
		{"extra member", rawBundle(t, append(signed(t, m), append(files, member{name: "extra", data: []byte("x")})...)...), nil,
			"bundle: another member after initramfs.cpio.gz"},
		{"reordered members", rawBundle(t, append(signed(t, m), files[1], files[0])...), nil,
			`bundle: member "initramfs.cpio.gz" where vmlinuz belongs`},
		{"signature first", rawBundle(t, signed(t, m)[1], signed(t, m)[0]), nil,
			`bundle: member "manifest.sig" where manifest.json belongs`},
		{"oversize manifest", rawBundle(t, member{name: ManifestName, data: make([]byte, MaxManifest+1)}), nil,
			"bundle: manifest.json: 65537 bytes, more than 65536"},
		{"short signature", rawBundle(t, member{name: ManifestName, data: []byte("{}")}, member{name: SignatureName, data: []byte("sig")}), nil,
			"bundle: manifest.sig: 3 bytes, want 64"},
		{"trailing garbage", append(bytes.Clone(good), "garbage"...), nil, "bundle: data after the end of the archive"},
		{"member size differs", rawBundle(t, append(signed(t, withManifest(func(c *Manifest) { c.Files[0].Size = 999 })), files...)...), nil,
			"bundle: vmlinuz: 1000 bytes, the manifest says 999"},
		{"oversize member", rawBundle(t, signed(t, withManifest(func(c *Manifest) { c.Files[1].Size = MaxMember + 1 }))...), nil,
			"bundle: manifest: initramfs.cpio.gz: size 268435457, want 1 to 268435456 bytes"},
		{"three files", rawBundle(t, signed(t, withManifest(func(c *Manifest) { c.Files = append(c.Files, c.Files[0]) }))...), nil,
			"bundle: manifest lists 3 files, want vmlinuz and initramfs.cpio.gz"},
		{"newline in version", rawBundle(t, signed(t, withManifest(func(c *Manifest) { c.Version = "1\nlinux /evil" }))...), nil,
			`bundle: manifest version "1\nlinux /evil": 1 to 64 letters, digits and . - _ + ~`},
		{"slot in cmdline", rawBundle(t, signed(t, withManifest(func(c *Manifest) { c.Cmdline = "gatehouse.slot=a" }))...), nil,
			"bundle: manifest cmdline names gatehouse.slot=, which the slot sets"},
		{"format 2", rawBundle(t, signed(t, withManifest(func(c *Manifest) { c.Format = 2 }))...), nil,
			"bundle: manifest format 2; this firmware reads format 1"},
		{"symlink member", rawBundle(t, append(signed(t, m), member{name: KernelName, hdr: func(h *tar.Header) {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, "/etc/shadow", 0
		}})...), nil, "bundle: header of vmlinuz: type '2', not a regular file"},
		{"pax header", rawBundle(t, append(signed(t, m), member{name: KernelName, data: kernel, hdr: func(h *tar.Header) {
			h.Format, h.PAXRecords = tar.FormatPAX, map[string]string{"comment": "x"}
		}})...), nil, "bundle: header of vmlinuz: type 'x', not a regular file"},
		{"not a tar", bytes.Repeat([]byte("x"), 2048), nil, "bundle: header of manifest.json: bad checksum field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pub := c.pub
			if pub == nil {
				pub = testPub()
			}
			_, err := Verify(writeTemp(t, c.bundle), pub)
			if err == nil || err.Error() != c.want {
				t.Errorf("Verify: %v\nwant %s", err, c.want)
			}
		})
	}
}

func TestBuiltInKey(t *testing.T) {
	defer func(k string) { trustedKey = k }(trustedKey)
	trustedKey = ""
	if _, err := TrustedKey(); err == nil {
		t.Error("no built-in key: no error")
	}
	trustedKey = "AAAA"
	if _, err := TrustedKey(); err == nil {
		t.Error("a 3-byte built-in key: no error")
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	trustedKey = encodeKey(other.Public().(ed25519.PublicKey))
	k, err := TrustedKey()
	if err != nil {
		t.Fatal(err)
	}
	good, _ := goodBundle(t)
	_, err = Verify(writeTemp(t, good), k)
	if err == nil || err.Error() != "bundle: signature does not verify with the built-in key" {
		t.Errorf("Verify with the built-in key: %v", err)
	}
}

// TestTruncated cuts the good bundle at every offset: each is refused,
// and the error names where the cut is.
func TestTruncated(t *testing.T) {
	good, m := goodBundle(t)
	var mj bytes.Buffer
	Extract(writeTemp(t, good), ManifestName, &mj)
	pad := func(n int) int { return (n + 511) / 512 * 512 }
	names := []string{ManifestName, SignatureName, KernelName, InitrdName}
	sizes := []int{mj.Len(), 64, int(m.Files[0].Size), int(m.Files[1].Size)}
	var starts []int // of each member's header, then of the end marker
	off := 0
	for _, s := range sizes {
		starts = append(starts, off)
		off += 512 + pad(s)
	}
	starts = append(starts, off)
	if len(good) != off+1024 {
		t.Fatalf("bundle is %d bytes, want %d", len(good), off+1024)
	}
	for cut := 0; cut < len(good); cut++ {
		var want string
		switch {
		case cut == 0:
			want = "bundle: empty file"
		case cut >= starts[4]:
			want = "bundle: truncated after initramfs.cpio.gz (no end-of-archive marker)"
		default:
			for i := range names {
				if cut == starts[i] {
					want = fmt.Sprintf("bundle: truncated after %s, before %s", names[i-1], names[i])
				} else if cut > starts[i] && cut < starts[i+1] {
					want = "bundle: truncated in " + names[i]
				}
			}
		}
		_, err := verify(bytes.NewReader(good[:cut]), testPub())
		if err == nil || err.Error() != want {
			t.Fatalf("cut at %d: %v\nwant %s", cut, err, want)
		}
	}
	// Tar's record padding after the marker is fine; past the bound it is not.
	if _, err := verify(bytes.NewReader(append(bytes.Clone(good), make([]byte, 9216)...)), testPub()); err != nil {
		t.Errorf("padded to a 10 KiB record: %v", err)
	}
	if _, err := verify(bytes.NewReader(append(bytes.Clone(good), make([]byte, maxTrailer)...)), testPub()); err == nil {
		t.Error("64 KiB of zeros after the end: no error")
	}
}

func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	k, i := bootFiles(t, dir, content(1, 10), content(2, 10))
	for _, c := range []struct{ version, cmdline, kernel string }{
		{"", "", k},
		{"1 2", "", k},
		{"v1", "quiet\n", k},
		{"v1", "gatehouse.slot=b", k},
		{"v1", "", filepath.Join(dir, "absent")},
	} {
		if _, err := Build(io.Discard, c.version, 1, c.cmdline, c.kernel, i, testKey); err == nil {
			t.Errorf("Build(%q, %q, %s): no error", c.version, c.cmdline, c.kernel)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Build(io.Discard, "v1", 1, "", empty, i, testKey); err == nil {
		t.Error("Build of an empty kernel: no error")
	}
}

func TestCompareBuilt(t *testing.T) {
	for _, c := range []struct {
		running, bundle int64
		ok              bool
	}{{100, 200, true}, {100, 100, true}, {200, 100, false}, {0, 1, true}} {
		if err := CompareBuilt(c.running, c.bundle); (err == nil) != c.ok {
			t.Errorf("CompareBuilt(%d, %d): %v", c.running, c.bundle, err)
		}
	}
}

func TestKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "key")
	pub, err := GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKey(dir); err == nil {
		t.Error("GenerateKey over an existing pair: no error")
	}
	priv, err := ReadPrivateKey(filepath.Join(dir, PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	pub2, err := ParsePublicKey(string(b))
	if err != nil || !pub2.Equal(pub) || !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Errorf("the pair does not match: %v", err)
	}
	for f, mode := range map[string]os.FileMode{PrivateKeyFile: 0o600, PublicKeyFile: 0o644} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", f, fi.Mode(), err, mode)
		}
	}
	if _, err := ParsePublicKey("AAAA"); err == nil {
		t.Error("a 3-byte public key: no error")
	}
}

func FuzzVerify(f *testing.F) {
	good, _ := goodBundle(f)
	f.Add(good)
	f.Add(good[:len(good)-1024])
	f.Add(good[:3000])
	f.Add(rawBundle(f, member{name: ManifestName, data: []byte("{}")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := verify(bytes.NewReader(b), testPub())
		if err == nil {
			if err := m.check(); err != nil {
				t.Fatalf("verified a bundle whose manifest is bad: %v", err)
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	_, m := goodBundle(f)
	mj, _ := json.Marshal(m)
	f.Add(mj)
	f.Add([]byte(`{"format":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest(b)
		if err != nil {
			return
		}
		// What it accepts renders to an entry that reads back the same.
		ent := Entry{Version: m.Version, Cmdline: strings.Join(strings.Fields(m.Cmdline), " "), Linux: "/b/" + versioned(m.Files[0]), Initrd: "/b/" + versioned(m.Files[1])}
		back, err := parseEntry(render(SlotB, ent))
		if err != nil || back != ent {
			t.Fatalf("entry of %+v reads back as %+v, %v", ent, back, err)
		}
	})
}
