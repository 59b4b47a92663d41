package update

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf16"

	"golang.org/x/sys/unix"
)

// systemd-boot's EFI variables, read and written through efivarfs.
const (
	LoaderVendor = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f" // systemd-boot's vendor GUID
	EFIVarsDir   = "/sys/firmware/efi/efivars"

	// LoaderEntryOneShot boots the entry it names once; systemd-boot
	// deletes it as it boots it.
	LoaderEntryOneShot = "LoaderEntryOneShot"
	// LoaderEntryDefault overrides loader.conf's default entry.
	LoaderEntryDefault = "LoaderEntryDefault"
	// LoaderEntrySelected is the entry systemd-boot booted (it sets it).
	LoaderEntrySelected = "LoaderEntrySelected"
)

// efiAttrs: non-volatile, boot service and runtime access.
const efiAttrs = 0x07

// fsImmutableFL is FS_IMMUTABLE_FL of FS_IOC_GETFLAGS (linux/fs.h).
const fsImmutableFL = 0x10

// efivarfsMagic is efivarfs's statfs type.
const efivarfsMagic = 0xde5e81e4

// efiVarPath is the efivarfs file of systemd-boot's variable name.
func efiVarPath(dir, name string) string {
	return filepath.Join(dir, name+"-"+LoaderVendor)
}

// SetEFIVar sets systemd-boot's variable name (LoaderEntryOneShot, ...)
// to value, stored as systemd-boot reads it: UTF-16LE with a final NUL,
// attributes NV|BS|RT. dir is where efivarfs is mounted (EFIVarsDir).
func SetEFIVar(dir, name, value string) error {
	p := efiVarPath(dir, name)
	buf := binary.LittleEndian.AppendUint32(nil, efiAttrs)
	for _, u := range utf16.Encode([]rune(value + "\x00")) {
		buf = binary.LittleEndian.AppendUint16(buf, u)
	}
	restore, err := clearImmutable(p)
	if err != nil {
		return fmt.Errorf("update: set EFI variable %s: %w", name, err)
	}
	// efivarfs replaces a variable by one write() of attributes and data
	// and has no truncate; a test's ordinary directory needs O_TRUNC.
	flags := os.O_WRONLY | os.O_CREATE
	if !isEfivarfs(dir) {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return fmt.Errorf("update: set EFI variable %s: %w", name, err)
	}
	_, err = f.Write(buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	restore()
	if err != nil {
		return fmt.Errorf("update: set EFI variable %s: %w", name, err)
	}
	return nil
}

// EFIVar reads systemd-boot's variable name; ok is false if it is not set.
func EFIVar(dir, name string) (value string, ok bool, err error) {
	b, err := os.ReadFile(efiVarPath(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("update: read EFI variable %s: %w", name, err)
	}
	v, err := decodeEFIString(b)
	if err != nil {
		return "", false, fmt.Errorf("update: EFI variable %s: %w", name, err)
	}
	return v, true, nil
}

// decodeEFIString reads an efivarfs file holding a UTF-16LE string: four
// bytes of attributes, then the string, NUL-terminated or not.
func decodeEFIString(b []byte) (string, error) {
	if len(b) < 4 || len(b)%2 != 0 {
		return "", fmt.Errorf("%d bytes: not attributes and a UTF-16 string", len(b))
	}
	b = b[4:]
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i < len(b); i += 2 {
		u = append(u, binary.LittleEndian.Uint16(b[i:]))
	}
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	return string(utf16.Decode(u)), nil
}

// DeleteEFIVar removes systemd-boot's variable name; one not set is no error.
func DeleteEFIVar(dir, name string) error {
	p := efiVarPath(dir, name)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := clearImmutable(p); err != nil {
		return fmt.Errorf("update: delete EFI variable %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("update: delete EFI variable %s: %w", name, err)
	}
	return nil
}

// clearImmutable clears the immutable flag efivarfs puts on variables (so
// that an rm -rf does not brick a machine) and returns a function that
// sets it again. A missing file, or a file system without flags, is no
// error: there is nothing to clear.
func clearImmutable(p string) (restore func(), err error) {
	none := func() {}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return none, nil
	}
	if err != nil {
		return none, err
	}
	defer f.Close()
	fd := int(f.Fd())
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			return none, nil
		}
		return none, fmt.Errorf("get flags of %s: %w", p, err)
	}
	if flags&fsImmutableFL == 0 {
		return none, nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^fsImmutableFL)); err != nil {
		return none, fmt.Errorf("clear the immutable flag of %s: %w", p, err)
	}
	return func() {
		if f, err := os.Open(p); err == nil {
			unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
			f.Close()
		}
	}, nil
}

func isEfivarfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && uint32(st.Type) == efivarfsMagic
}
