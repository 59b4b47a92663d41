package update

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// A Manifest describes a bundle; its exact bytes are what the signature covers.
type Manifest struct {
	Format  int    `json:"format"`
	Version string `json:"version"`
	Built   int64  `json:"built"` // commit time, unix seconds: orders firmware for downgrade checks
	Cmdline string `json:"cmdline"`
	Files   []File `json:"files"`
}

// A File is one boot file a bundle carries.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lower-case hex
}

// The bundle's members, in the order they must come.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
	KernelName    = "vmlinuz"
	InitrdName    = "initramfs.cpio.gz"
)

// DefaultCmdline is the kernel command line of a bundle that names none:
// panic=5 makes a kernel panic reboot, so a failed trial boot falls back
// to the default slot by itself.
const DefaultCmdline = "console=ttyS0 panic=5 quiet"

// Bounds on what Verify reads; beyond them a bundle is refused unread.
const (
	MaxManifest = 64 << 10
	MaxMember   = 256 << 20
)

// memberNames are the members after the signature, as Files lists them.
var memberNames = []string{KernelName, InitrdName}

// Build writes a bundle of the kernel and initramfs files to w, signed
// with key, and returns its manifest. An empty cmdline is DefaultCmdline.
func Build(w io.Writer, version string, built int64, cmdline, vmlinuz, initramfs string, key ed25519.PrivateKey) (Manifest, error) {
	if cmdline == "" {
		cmdline = DefaultCmdline
	}
	m := Manifest{Format: 1, Version: version, Built: built, Cmdline: cmdline}
	paths := []string{vmlinuz, initramfs}
	for i, p := range paths {
		f, err := hashFile(p)
		if err != nil {
			return Manifest{}, fmt.Errorf("bundle: %w", err)
		}
		f.Name = memberNames[i]
		m.Files = append(m.Files, f)
	}
	if err := m.check(); err != nil {
		return Manifest{}, err
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return Manifest{}, err
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(built, 0)
	add := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: mtime, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("bundle: %s: %w", name, err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("bundle: %s: %w", name, err)
		}
		return nil
	}
	if err := add(ManifestName, int64(len(mj)), bytes.NewReader(mj)); err != nil {
		return Manifest{}, err
	}
	if err := add(SignatureName, ed25519.SignatureSize, bytes.NewReader(ed25519.Sign(key, mj))); err != nil {
		return Manifest{}, err
	}
	for i, p := range paths {
		if err := addFile(add, p, m.Files[i]); err != nil {
			return Manifest{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("bundle: %w", err)
	}
	return m, nil
}

// addFile copies a boot file into the bundle, checking it is still what
// was hashed for the manifest (a file rewritten meanwhile fails the build
// rather than making a bundle that never verifies).
func addFile(add func(string, int64, io.Reader) error, path string, want File) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if err := add(want.Name, want.Size, io.TeeReader(io.LimitReader(f, want.Size), h)); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return fmt.Errorf("bundle: %s changed while the bundle was made", path)
	}
	return nil
}

func hashFile(path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", path, err)
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// check is what a manifest must satisfy besides its signature. Its strings
// end up in a boot loader entry, one per line: they must be plain text.
func (m *Manifest) check() error {
	if m.Format != 1 {
		return fmt.Errorf("bundle: manifest format %d; this firmware reads format 1", m.Format)
	}
	if m.Version == "" || len(m.Version) > 64 || strings.IndexFunc(m.Version, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_+~", r))
	}) >= 0 {
		return fmt.Errorf("bundle: manifest version %q: 1 to 64 letters, digits and . - _ + ~", m.Version)
	}
	if m.Built <= 0 {
		return fmt.Errorf("bundle: manifest built %d: not a time", m.Built)
	}
	if len(m.Cmdline) > 2048 || strings.IndexFunc(m.Cmdline, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		return errors.New("bundle: manifest cmdline: up to 2048 printable ASCII characters")
	}
	if strings.Contains(m.Cmdline, "gatehouse.slot=") {
		return errors.New("bundle: manifest cmdline names gatehouse.slot=, which the slot sets")
	}
	if len(m.Files) != len(memberNames) {
		return fmt.Errorf("bundle: manifest lists %d files, want %s", len(m.Files), strings.Join(memberNames, " and "))
	}
	for i, f := range m.Files {
		if f.Name != memberNames[i] {
			return fmt.Errorf("bundle: manifest file %d is %q, want %s", i+1, f.Name, memberNames[i])
		}
		if f.Size <= 0 || f.Size > MaxMember {
			return fmt.Errorf("bundle: manifest: %s: size %d, want 1 to %d bytes", f.Name, f.Size, MaxMember)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size || strings.ToLower(f.SHA256) != f.SHA256 {
			return fmt.Errorf("bundle: manifest: %s: sha256 %q is not 64 lower-case hex digits", f.Name, f.SHA256)
		}
	}
	return nil
}

// parseManifest decodes manifest.json strictly: no unknown fields, nothing after it.
func parseManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&m)
	if err == nil && dec.More() {
		err = errors.New("data after the manifest")
	}
	if err != nil {
		// A later format may add fields: name the format rather than the field.
		var f struct{ Format int }
		if json.Unmarshal(b, &f) == nil && f.Format != 1 {
			return Manifest{}, fmt.Errorf("bundle: manifest format %d; this firmware reads format 1", f.Format)
		}
		return Manifest{}, fmt.Errorf("bundle: manifest.json: %w", err)
	}
	if err := m.check(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Verify checks the bundle at path with pub: the members, their order and
// names, the signature of the manifest, every member's size and SHA-256,
// and that nothing follows the end of the archive. It reads the file once
// from start to end and writes nothing anywhere.
func Verify(path string, pub ed25519.PublicKey) (Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	return verify(bufio.NewReaderSize(f, 1<<16), pub)
}

func verify(r io.Reader, pub ed25519.PublicKey) (Manifest, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Manifest{}, errors.New("bundle: no key to verify with")
	}
	tr := &tarReader{r: r}
	mj, err := tr.small(ManifestName, MaxManifest)
	if err != nil {
		return Manifest{}, err
	}
	sig, err := tr.small(SignatureName, ed25519.SignatureSize)
	if err != nil {
		return Manifest{}, err
	}
	if len(sig) != ed25519.SignatureSize {
		return Manifest{}, fmt.Errorf("bundle: manifest.sig: %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	// The signature first: nothing of the manifest is believed before.
	if !ed25519.Verify(pub, mj, sig) {
		which := "the given key"
		if k, err := TrustedKey(); err == nil && k.Equal(pub) {
			which = "the built-in key"
		}
		return Manifest{}, fmt.Errorf("bundle: signature does not verify with %s", which)
	}
	m, err := parseManifest(mj)
	if err != nil {
		return Manifest{}, err
	}
	for _, want := range m.Files {
		h := sha256.New()
		if err := tr.member(want.Name, want.Size, h); err != nil {
			return Manifest{}, err
		}
		if hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
			return Manifest{}, fmt.Errorf("bundle: %s: sha256 mismatch", want.Name)
		}
	}
	if err := tr.end(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Extract copies the member name of the bundle at path to w. It checks
// the archive's structure on the way but not the member's content: call
// Verify first (ESP.WriteSlot checks every byte against the manifest).
func Extract(path, name string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	return extract(bufio.NewReaderSize(f, 1<<16), name, -1, w)
}

// extract copies member name to w; size ≥ 0 is the size it must have.
func extract(r io.Reader, name string, size int64, w io.Writer) error {
	tr := &tarReader{r: r}
	for _, n := range []string{ManifestName, SignatureName, KernelName, InitrdName} {
		hdrSize, err := tr.header(n)
		if err != nil {
			return err
		}
		if n != name {
			if err := tr.body(n, hdrSize, io.Discard); err != nil {
				return err
			}
			continue
		}
		if size >= 0 && hdrSize != size {
			return fmt.Errorf("bundle: %s: %d bytes, the manifest says %d", n, hdrSize, size)
		}
		if hdrSize > MaxMember {
			return fmt.Errorf("bundle: %s: %d bytes, more than %d", n, hdrSize, MaxMember)
		}
		return tr.body(n, hdrSize, w)
	}
	return fmt.Errorf("bundle: no member %q", name)
}

// tarReader reads the bundle's strict subset of tar: ustar headers of
// regular files with the expected names, no extensions (pax, GNU long
// names), sizes in octal. Anything else is refused rather than skipped,
// so what was verified is exactly what is installed.
type tarReader struct {
	r    io.Reader
	last string // the member read last, for the errors
	blk  [512]byte
}

const blockSize = 512

// header reads the next header, which must be member name's, and returns its size.
func (t *tarReader) header(name string) (int64, error) {
	if n, err := io.ReadFull(t.r, t.blk[:]); err != nil {
		if n == 0 {
			return 0, t.truncatedBefore(name)
		}
		return 0, fmt.Errorf("bundle: truncated in %s", name)
	}
	if t.blk == [blockSize]byte{} {
		return 0, fmt.Errorf("bundle: the archive ends before %s", name)
	}
	got, size, err := parseHeader(t.blk[:])
	if err != nil {
		return 0, fmt.Errorf("bundle: header of %s: %w", name, err)
	}
	if got != name {
		return 0, fmt.Errorf("bundle: member %q where %s belongs", got, name)
	}
	t.last = name
	return size, nil
}

func (t *tarReader) truncatedBefore(name string) error {
	if t.last == "" {
		return errors.New("bundle: empty file")
	}
	return fmt.Errorf("bundle: truncated after %s, before %s", t.last, name)
}

// body copies size bytes of member name to w and skips the padding.
func (t *tarReader) body(name string, size int64, w io.Writer) error {
	if n, err := io.CopyN(w, t.r, size); err != nil {
		if err == io.EOF && n < size {
			return fmt.Errorf("bundle: truncated in %s", name)
		}
		return fmt.Errorf("bundle: %s: %w", name, err)
	}
	if pad := (blockSize - size%blockSize) % blockSize; pad > 0 {
		if _, err := io.ReadFull(t.r, t.blk[:pad]); err != nil {
			return fmt.Errorf("bundle: truncated in %s", name)
		}
	}
	return nil
}

// small reads a member of at most max bytes into memory.
func (t *tarReader) small(name string, max int64) ([]byte, error) {
	size, err := t.header(name)
	if err != nil {
		return nil, err
	}
	if size > max {
		return nil, fmt.Errorf("bundle: %s: %d bytes, more than %d", name, size, max)
	}
	var b bytes.Buffer
	if err := t.body(name, size, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// member reads a member whose size the manifest gives.
func (t *tarReader) member(name string, size int64, w io.Writer) error {
	got, err := t.header(name)
	if err != nil {
		return err
	}
	if got != size {
		return fmt.Errorf("bundle: %s: %d bytes, the manifest says %d", name, got, size)
	}
	return t.body(name, size, w)
}

// maxTrailer bounds the zeros after the last member: the end-of-archive
// marker (two zero blocks) and the padding of tar's 10 KiB records.
const maxTrailer = 64 << 10

// end checks that only the end-of-archive marker and zero padding follow.
func (t *tarReader) end() error {
	var n int64
	buf := make([]byte, 4096)
	for {
		k, err := t.r.Read(buf)
		for _, c := range buf[:k] {
			if c != 0 {
				if n < 2*blockSize {
					return fmt.Errorf("bundle: another member after %s", t.last)
				}
				return fmt.Errorf("bundle: data after the end of the archive")
			}
			n++
		}
		if n > maxTrailer {
			return fmt.Errorf("bundle: more than %d bytes after the end of the archive", maxTrailer)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	if n < 2*blockSize {
		return fmt.Errorf("bundle: truncated after %s (no end-of-archive marker)", t.last)
	}
	return nil
}

// parseHeader checks a ustar header block and returns the name and size.
func parseHeader(b []byte) (string, int64, error) {
	want, err := parseOctal(b[148:156])
	if err != nil {
		return "", 0, errors.New("bad checksum field")
	}
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	if sum != want {
		return "", 0, errors.New("checksum mismatch")
	}
	magic := string(b[257:265])
	switch magic {
	case "ustar\x0000":
		if b[345] != 0 {
			return "", 0, errors.New("a name prefix (ustar long name)")
		}
	case "ustar  \x00": // GNU tar's
	default:
		return "", 0, fmt.Errorf("not a ustar header (magic %q)", magic)
	}
	if tf := b[156]; tf != '0' && tf != 0 {
		return "", 0, fmt.Errorf("type %q, not a regular file", tf)
	}
	name := b[:100]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	size, err := parseOctal(b[124:136])
	if err != nil {
		return "", 0, errors.New("bad size field")
	}
	return string(name), size, nil
}

// parseOctal reads a tar number: octal digits, padded by spaces or NULs.
func parseOctal(b []byte) (int64, error) {
	s := strings.Trim(string(b), " \x00")
	if s == "" || len(s) > 11 {
		return 0, errors.New("bad number")
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return 0, errors.New("bad number")
		}
		n = n*8 + int64(c-'0')
	}
	return n, nil
}
