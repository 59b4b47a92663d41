package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"gatehouse/update"
)

const bundleUsage = `usage: gatehouse bundle keygen DIR
       gatehouse bundle sign --key FILE --version V --built UNIX [--cmdline "..."] --out FILE VMLINUZ INITRAMFS
       gatehouse bundle verify FILE [--pub BASE64]`

// cmdBundle makes and checks firmware bundles: what an update installs.
func cmdBundle(args []string, stdout io.Writer) error {
	usage := &exitError{2, errors.New(bundleUsage)}
	if len(args) == 0 {
		return usage
	}
	switch args[0] {
	case "keygen":
		if len(args) != 2 {
			return usage
		}
		pub, err := update.GenerateKey(args[1])
		if err != nil {
			return &exitError{1, err}
		}
		fmt.Fprintf(stdout, "bundle signing key written to %s (keep it secret), public key to %s:\n%s\n",
			filepath.Join(args[1], update.PrivateKeyFile), filepath.Join(args[1], update.PublicKeyFile),
			base64.StdEncoding.EncodeToString(pub))
		return nil
	case "sign":
		return bundleSign(args[1:], stdout, usage)
	case "verify":
		return bundleVerify(args[1:], stdout, usage)
	}
	return usage
}

func bundleSign(args []string, stdout io.Writer, usage error) error {
	fs := flag.NewFlagSet("bundle sign", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error and the usage lines say it all
	keyFile := fs.String("key", "", "the signing key (bundle.key)")
	version := fs.String("version", "", "the firmware's version")
	built := fs.Int64("built", 0, "the firmware's build time, unix seconds (the commit time)")
	cmdline := fs.String("cmdline", update.DefaultCmdline, "the kernel command line")
	out := fs.String("out", "", "the bundle to write")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return &exitError{2, fmt.Errorf("gatehouse bundle sign: %w\n%s", err, bundleUsage)}
	}
	if len(pos) != 2 || *keyFile == "" || *version == "" || *built == 0 || *out == "" {
		return usage
	}
	key, err := update.ReadPrivateKey(*keyFile)
	if err != nil {
		return &exitError{1, fmt.Errorf("gatehouse bundle sign: %w", err)}
	}
	// Written beside the destination and renamed: a failed or
	// interrupted sign leaves no bundle rather than half of one.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*.tmp")
	if err != nil {
		return &exitError{1, fmt.Errorf("gatehouse bundle sign: %w", err)}
	}
	defer os.Remove(tmp.Name())
	m, err := update.Build(tmp, *version, *built, *cmdline, pos[0], pos[1], key)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_, err = update.Verify(tmp.Name(), key.Public().(ed25519.PublicKey))
	}
	if err == nil {
		err = os.Rename(tmp.Name(), *out)
	}
	if err != nil {
		return &exitError{1, fmt.Errorf("gatehouse bundle sign: %w", err)}
	}
	fmt.Fprintf(stdout, "%s: signed with the key whose public half is %s\n", *out,
		base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)))
	printManifest(stdout, m)
	return nil
}

func bundleVerify(args []string, stdout io.Writer, usage error) error {
	fs := flag.NewFlagSet("bundle verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pubFlag := fs.String("pub", "", "the public key (base64, as in bundle.pub); default: the key built into this binary")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return &exitError{2, fmt.Errorf("gatehouse bundle verify: %w\n%s", err, bundleUsage)}
	}
	if len(pos) != 1 {
		return usage
	}
	var pub ed25519.PublicKey
	which := "the built-in key"
	if *pubFlag != "" {
		if pub, err = update.ParsePublicKey(*pubFlag); err != nil {
			return &exitError{2, fmt.Errorf("gatehouse bundle verify: --pub: %w", err)}
		}
		which = "the key " + *pubFlag
	} else if pub, err = update.TrustedKey(); err != nil {
		return &exitError{1, fmt.Errorf("%w; pass --pub", err)}
	}
	m, err := update.Verify(pos[0], pub)
	if err != nil {
		return &exitError{1, err}
	}
	fmt.Fprintf(stdout, "%s: verified with %s\n", pos[0], which)
	printManifest(stdout, m)
	return nil
}

func printManifest(w io.Writer, m update.Manifest) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "version\t%s\n", m.Version)
	fmt.Fprintf(tw, "built\t%s (%s)\n", time.Unix(m.Built, 0).UTC().Format(time.RFC3339), strconv.FormatInt(m.Built, 10))
	fmt.Fprintf(tw, "cmdline\t%s\n", m.Cmdline)
	for _, f := range m.Files {
		fmt.Fprintf(tw, "%s\t%d bytes, sha256 %s\n", f.Name, f.Size, f.SHA256)
	}
	tw.Flush()
}
