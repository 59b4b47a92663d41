// Package update installs firmware on the appliance: it reads and checks
// signed firmware bundles, writes a bundle's kernel and initramfs into a
// boot slot on the EFI system partition, and sets the systemd-boot EFI
// variables that make a slot boot once (trial) or by default.
//
// A bundle is an uncompressed POSIX tar whose members are, in this order,
// manifest.json, manifest.sig (the raw 64-byte ed25519 signature of the
// exact bytes of manifest.json), vmlinuz and initramfs.cpio.gz. Nothing of
// a bundle is used before its signature has been checked with the key built
// into the binary and every member matched its size and SHA-256.
package update

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
)

// trustedKey is the base64 (standard encoding) of the 32-byte ed25519
// public key bundles must be signed with, stamped by the Makefile:
// -X gatehouse/update.trustedKey=...
var trustedKey string

// TrustedKey is the public key built into the binary.
func TrustedKey() (ed25519.PublicKey, error) {
	if trustedKey == "" {
		return nil, errors.New("update: no bundle key built in (make stamps it with -X gatehouse/update.trustedKey=)")
	}
	k, err := ParsePublicKey(trustedKey)
	if err != nil {
		return nil, fmt.Errorf("update: built-in bundle key: %w", err)
	}
	return k, nil
}

// CompareBuilt refuses a downgrade: a bundle built before the running
// firmware. running is the running firmware's build time (unix seconds);
// 0 means unknown (a binary built without the Makefile's stamp), which
// refuses nothing. Equal times are the same build again: allowed.
func CompareBuilt(running, bundle int64) error {
	if running > 0 && bundle < running {
		return fmt.Errorf("update: the bundle was built %s, before the running firmware (%s): a downgrade",
			stamp(bundle), stamp(running))
	}
	return nil
}

func stamp(unix int64) string {
	return time.Unix(unix, 0).UTC().Format(time.RFC3339)
}
