// Command bundlekey makes the development bundle signing key pair the
// Makefile builds into the binary, if there is none yet:
//
//	go run ./image/bundlekey -dir build/bundle-key
//
// It needs no gatehouse binary (the binary needs the public key to be
// built). When the pair exists it does nothing and prints nothing.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"gatehouse/update"
)

func main() {
	dir := flag.String("dir", "build/bundle-key", "directory of the key pair")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "bundlekey:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	key, pub := exists(filepath.Join(dir, update.PrivateKeyFile)), exists(filepath.Join(dir, update.PublicKeyFile))
	switch {
	case key && pub:
		return nil
	case key || pub:
		// Half a pair: making a new one would orphan the half that exists.
		return fmt.Errorf("%s holds only one of %s and %s; restore the other or remove it",
			dir, update.PrivateKeyFile, update.PublicKeyFile)
	}
	if _, err := update.GenerateKey(dir); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bundlekey: made a development bundle signing key pair in %s\n", dir)
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, os.ErrNotExist)
}
