package image

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// A fake kernel tree: the image must carry the asked-for modules and their
// dependencies, nothing else, and a modules.dep that covers exactly those.
func TestInitramfsCarriesModuleClosureOnly(t *testing.T) {
	root := t.TempDir()
	rel := "6.1.0-test"
	mods := filepath.Join(root, "lib/modules", rel)
	files := map[string]string{
		"kernel/drivers/virtio/virtio.ko":             "",
		"kernel/drivers/virtio/virtio_ring.ko":        "",
		"kernel/drivers/block/virtio_blk.ko":          "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/char/hw_random/virtio-rng.ko": "kernel/drivers/virtio/virtio.ko",
		"kernel/sound/unwanted.ko":                    "",
	}
	var dep strings.Builder
	for f, d := range files {
		os.MkdirAll(filepath.Join(mods, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(mods, f), []byte("module "+f), 0o644)
		dep.WriteString(f + ": " + d + "\n")
	}
	os.WriteFile(filepath.Join(mods, "modules.dep"), []byte(dep.String()), 0o644)
	os.WriteFile(filepath.Join(mods, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644)
	bin := filepath.Join(root, "gatehouse")
	os.WriteFile(bin, []byte("ELF"), 0o755)
	cfg := filepath.Join(root, "default.yaml")
	os.WriteFile(cfg, []byte("hostname: x\n"), 0o644)

	out := filepath.Join(t.TempDir(), "initramfs.cpio.gz")
	got, err := Initramfs(Spec{KernelRoot: root, Release: rel, Binary: bin, Config: cfg, CACerts: cfg,
		Modules: []string{"virtio_blk", "virtio_rng"}}, out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/drivers/block/virtio_blk.ko", "kernel/drivers/char/hw_random/virtio-rng.ko",
		"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko"}
	if !slices.Equal(got, want) {
		t.Errorf("modules %q, want %q", got, want)
	}

	recs := readArchive(t, out)
	base := "lib/modules/" + rel + "/"
	if strings.Contains(recs[base+"modules.dep"], "unwanted") {
		t.Errorf("modules.dep lists a module the image does not carry:\n%s", recs[base+"modules.dep"])
	}
	if _, ok := recs[base+"kernel/sound/unwanted.ko"]; ok {
		t.Error("unwanted module carried")
	}
	if recs["init"] != "ELF" || recs[base+"gatehouse.modules"] != "virtio_blk\nvirtio_rng\n" {
		t.Errorf("init %q, module list %q", recs["init"], recs[base+"gatehouse.modules"])
	}
	for _, must := range []string{"dev/console", "etc/gatehouse/gatehouse.yaml", "etc/ssl/certs/ca-certificates.crt", "data"} {
		if _, ok := recs[must]; !ok {
			t.Errorf("%s missing", must)
		}
	}

	if _, err := Initramfs(Spec{KernelRoot: root, Release: rel, Binary: bin, Config: cfg, CACerts: cfg,
		Modules: []string{"nonexistent"}}, out); err == nil {
		t.Error("a module the kernel lacks was accepted")
	}
}

func readArchive(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	tmp := filepath.Join(t.TempDir(), "a.cpio")
	os.WriteFile(tmp, raw, 0o644)
	rf, _ := os.Open(tmp)
	defer rf.Close()
	rr, err := cpio.Newc.NewFileReader(rf)
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]string{}
	err = cpio.ForEachRecord(rr, func(r cpio.Record) error {
		var b []byte
		if r.ReaderAt != nil {
			b, _ = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		}
		recs[r.Name] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
