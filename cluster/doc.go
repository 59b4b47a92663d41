package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"

	"gatehouse/config"

	"github.com/goccy/go-yaml"
)

// A config file has two parts in a cluster: the node's own sections
// (config.NodeLocalKeys: hostname, interfaces, routes, cluster) and the
// shared ones, which the cluster replicates. The split is textual, by
// top-level key, so that the operator's comments and layout travel with
// the config, and the hash of the shared part is the same on every node.

// block is one top-level key with its value and the comments above it.
type block struct {
	key  string
	text []byte
}

// splitTop cuts a YAML document into its top-level blocks. It checks its
// reading against the YAML decoder: a document it cannot cut (a flow
// mapping at the top, say) is refused rather than misread.
func splitTop(doc []byte) ([]block, error) {
	var blocks []block
	var pending []byte // comments and blank lines waiting for their key
	lines := bytes.SplitAfter(doc, []byte("\n"))
	for _, line := range lines {
		if len(line) == 0 {
			continue
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.Equal(trimmed, []byte("---")):
			continue
		case len(trimmed) == 0 || trimmed[0] == '#' || trimmed[0] == ' ' || trimmed[0] == '\t' || trimmed[0] == '-' && len(blocks) > 0:
			// Inside the current value (indented, a list item at column
			// 0 under its key) or between blocks.
			if len(blocks) == 0 || len(trimmed) == 0 || trimmed[0] == '#' {
				pending = append(pending, line...)
				continue
			}
			last := &blocks[len(blocks)-1]
			last.text = append(last.text, pending...)
			pending = nil
			last.text = append(last.text, line...)
		default:
			i := bytes.IndexByte(trimmed, ':')
			if i <= 0 {
				return nil, fmt.Errorf("line %q: not a top-level key", trimmed)
			}
			key := strings.Trim(string(trimmed[:i]), `"'`)
			text := append(pending, line...)
			pending = nil
			blocks = append(blocks, block{key: key, text: text})
		}
	}
	if len(pending) > 0 && len(blocks) > 0 {
		last := &blocks[len(blocks)-1]
		last.text = append(last.text, pending...)
	}
	var top yaml.MapSlice
	if err := yaml.Unmarshal(doc, &top); err != nil {
		return nil, err
	}
	var keys []string
	for _, b := range blocks {
		keys = append(keys, b.key)
	}
	var want []string
	for _, it := range top {
		want = append(want, fmt.Sprint(it.Key))
	}
	if !slices.Equal(keys, want) {
		return nil, fmt.Errorf("the config's top level must be one key per line in block style (found %v, read %v)", want, keys)
	}
	return blocks, nil
}

func isLocal(key string) bool { return slices.Contains(config.NodeLocalKeys, key) }

// SharedPart is the part of a config the cluster replicates.
func SharedPart(doc []byte) ([]byte, error) {
	blocks, err := splitTop(doc)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, b := range blocks {
		if !isLocal(b.key) {
			out = append(out, b.text...)
		}
	}
	return ensureNewline(out), nil
}

// Merge is the config a node runs: its own sections from local, the
// cluster's from shared.
func Merge(shared, local []byte) ([]byte, error) {
	lb, err := splitTop(local)
	if err != nil {
		return nil, fmt.Errorf("this node's config: %w", err)
	}
	sb, err := splitTop(shared)
	if err != nil {
		return nil, fmt.Errorf("the cluster's config: %w", err)
	}
	var out []byte
	for _, b := range lb {
		if isLocal(b.key) {
			out = append(out, ensureNewline(b.text)...)
		}
	}
	for _, b := range sb {
		if !isLocal(b.key) {
			out = append(out, ensureNewline(b.text)...)
		}
	}
	return out, nil
}

func ensureNewline(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return append(b, '\n')
	}
	return b
}

// hashOf names a shared config: the SHA-256 of its text, hex.
func hashOf(shared []byte) string {
	sum := sha256.Sum256(shared)
	return hex.EncodeToString(sum[:])
}

// secretKeys are the config keys whose values name files the services
// read secrets or trust anchors from: the cluster carries these files
// with the config, encrypted like the rest.
var secretKeys = []string{"password_file", "ca_file", "cert", "key", "client_ca", "cert_file", "key_file"}

// SecretPaths lists the files a config names under secretKeys.
func SecretPaths(doc []byte) []string {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil
	}
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				if s, ok := x.(string); ok && slices.Contains(secretKeys, k) && strings.HasPrefix(s, "/") {
					seen[s] = true
				}
				walk(x)
			}
		case []any:
			for _, x := range t {
				walk(x)
			}
		}
	}
	walk(v)
	var out []string
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
