// Package safeio replaces files so that a crash or power cut leaves either
// the old content or the new, never a part of either: the appliance's
// config, host key, certificates, queue state and the files it publishes
// for other programs (resolv.conf, network state) all go through it.
package safeio

import (
	"fmt"
	"os"
	"path/filepath"
)

// An Option changes how WriteFile replaces a file.
type Option int

// NoDirSync leaves out the fsync of the directory after the rename: the file
// is still whole (old or new) after a power cut, but the new content may be
// lost. For state rewritten often whose loss costs only a repeated step
// (the queue's delivery state: one more delivery attempt).
const NoDirSync Option = 1

// WriteFile replaces path with data, mode perm (exactly: the umask plays no
// part). A temporary file in the same directory is written, fsynced, renamed
// over path, and the directory fsynced, so that once WriteFile returns nil
// the new content survives a power cut. On an error before the rename path
// is unchanged; no temporary file is left behind on any error.
func WriteFile(path string, data []byte, perm os.FileMode, opts ...Option) error {
	dirSync := true
	for _, o := range opts {
		if o == NoDirSync {
			dirSync = false
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// Hidden and uniquely named: two writers of one file never share a
	// temporary file, and a listing of the directory skips it.
	f, err := os.CreateTemp(dir, "."+base+".tmp*") // mode 0600 until the Chmod
	if err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if !dirSync {
		return nil
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("replace %s: sync directory: %w", path, err)
	}
	return nil
}

// SyncDir makes a rename or a new entry in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
