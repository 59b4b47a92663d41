package safeio

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// entries lists dir, so that a test sees any temporary file left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	old := syscall.Umask(0o077) // the mode asked for wins over the umask
	defer syscall.Umask(old)
	for _, tc := range []struct {
		name string
		perm os.FileMode
		opts []Option
	}{
		{"private", 0o600, nil},
		{"public", 0o644, nil},
		{"group", 0o640, []Option{NoDirSync}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "f")
			data := []byte("content of " + tc.name + "\n")
			if err := WriteFile(file, data, tc.perm, tc.opts...); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(file)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("content %q, %v; want %q", got, err, data)
			}
			st, _ := os.Stat(file)
			if st.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.perm)
			}
			if e := entries(t, dir); len(e) != 1 {
				t.Errorf("directory holds %q, want only f", e)
			}
		})
	}
}

func TestOverwrite(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("an old and longer content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(file, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	if string(got) != "new\n" {
		t.Errorf("content %q, want %q", got, "new\n")
	}
	st, _ := os.Stat(file)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (the new file's, not the old one's)", st.Mode().Perm())
	}
	if e := entries(t, dir); len(e) != 1 {
		t.Errorf("directory holds %q, want only f", e)
	}
}

// A relative path is replaced in the working directory.
func TestRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := WriteFile("f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile("f"); string(got) != "x" {
		t.Errorf("content %q", got)
	}
}

func TestFailureLeavesNoTemporaryFile(t *testing.T) {
	t.Run("no directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o644); err == nil {
			t.Fatal("no error")
		}
		if e := entries(t, dir); len(e) != 0 {
			t.Errorf("directory holds %q", e)
		}
	})
	t.Run("rename refused", func(t *testing.T) {
		// A non-empty directory where the file should be: the rename fails
		// after the temporary file was written.
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "f", "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err == nil {
			t.Fatal("no error")
		}
		if e := entries(t, dir); len(e) != 1 || e[0] != "f" {
			t.Errorf("directory holds %q, want only f", e)
		}
	})
	t.Run("write fails", func(t *testing.T) {
		// A file size limit makes the write fail part way (EFBIG; the Go
		// runtime ignores SIGXFSZ).
		dir := t.TempDir()
		file := filepath.Join(dir, "f")
		if err := os.WriteFile(file, []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatal(err)
		}
		small := lim
		small.Cur = 1024
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &small); err != nil {
			t.Skip("cannot lower the file size limit:", err)
		}
		err := WriteFile(file, make([]byte, 64<<10), 0o644)
		syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim)
		if err == nil {
			t.Fatal("no error")
		}
		if got, _ := os.ReadFile(file); string(got) != "old\n" {
			t.Errorf("content %q, want the old one", got)
		}
		if e := entries(t, dir); len(e) != 1 {
			t.Errorf("directory holds %q, want only f", e)
		}
	})
	t.Run("directory not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes to any directory")
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "f")
		os.WriteFile(file, []byte("old\n"), 0o644)
		os.Chmod(dir, 0o555)
		defer os.Chmod(dir, 0o755)
		if err := WriteFile(file, []byte("new\n"), 0o644); err == nil {
			t.Fatal("no error")
		}
		if got, _ := os.ReadFile(file); string(got) != "old\n" {
			t.Errorf("content %q, want the old one", got)
		}
		if e := entries(t, dir); len(e) != 1 {
			t.Errorf("directory holds %q, want only f", e)
		}
	})
}

// Writers of one file at once: the file ends whole (one writer's content),
// and no temporary file is left.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	contents := [][]byte{bytes.Repeat([]byte("a"), 8192), bytes.Repeat([]byte("b"), 100)}
	var wg sync.WaitGroup
	for _, c := range contents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if err := WriteFile(file, c, 0o644, NoDirSync); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, _ := os.ReadFile(file)
	if !bytes.Equal(got, contents[0]) && !bytes.Equal(got, contents[1]) {
		t.Errorf("content is neither writer's: %d bytes", len(got))
	}
	if e := entries(t, dir); len(e) != 1 {
		t.Errorf("directory holds %q, want only f", e)
	}
}
