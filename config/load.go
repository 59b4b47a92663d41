package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Error is one problem in a config file, placed for a person to find it.
type Error struct {
	File   string
	Line   int
	Column int
	Path   string // field path, such as interfaces[0].addresses[1]
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, []*Error, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates one config file. It returns the config and
// its warnings, or an Errors value naming every problem it found.
// Unknown keys, duplicate keys and values of the wrong type are errors.
func Parse(name string, data []byte) (*Config, []*Error, error) {
	c, _, warns, err := parse(name, data)
	return c, warns, err
}

func parse(name string, data []byte) (*Config, *index, []*Error, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		// Index a lenient parse, if there is one, to name the field.
		var idx *index
		if f, lerr := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey()); lerr == nil {
			idx = indexFile(f)
		}
		return nil, nil, nil, Errors{yamlError(name, idx, err)}
	}
	idx := indexFile(file)
	idx.lines = strings.Split(string(data), "\n")
	var c Config
	if len(file.Docs) > 1 {
		return nil, nil, nil, Errors{{File: name, Line: 1, Column: 1, Msg: "one YAML document expected, found " + fmt.Sprint(len(file.Docs))}}
	}
	var bad invalidValues
	if len(file.Docs) == 1 && file.Docs[0].Body != nil {
		ctx := context.WithValue(context.Background(), invalidKey{}, &bad)
		dec := yaml.NewDecoder(bytes.NewReader(nil), yaml.DisallowUnknownField())
		if err := dec.DecodeFromNodeContext(ctx, file.Docs[0].Body, &c); err != nil {
			return nil, nil, nil, Errors{yamlError(name, idx, err)}
		}
	}
	c.applyDefaults()
	errs, warns := c.validate()
	errs = bad.merge(idx, errs)
	if len(errs) > 0 {
		return nil, idx, idx.place(name, warns), Errors(idx.place(name, errs))
	}
	return &c, idx, idx.place(name, warns), nil
}

// invalidValues are the problems of values written well that mean nothing
// (a peer that is neither address nor name, a TLS level that does not
// exist). Decoding goes on past them, so that every such problem in a file
// is named at once, like validation's.
type invalidValues struct{ list []*posError }

type invalidKey struct{}

// invalid records a value's problem where the loader collects them, or
// returns it, to end the decoding, where nothing does.
func invalid(ctx context.Context, tok *token.Token, format string, args ...any) error {
	e := &posError{tok: tok, msg: fmt.Sprintf(format, args...)}
	if bad, ok := ctx.Value(invalidKey{}).(*invalidValues); ok {
		bad.list = append(bad.list, e)
		return nil
	}
	return e
}

// merge adds the values' problems to validation's, and drops what
// validation found about a value that did not decode (it saw a default in
// its place).
func (bad *invalidValues) merge(idx *index, errs []problem) []problem {
	if len(bad.list) == 0 {
		return errs
	}
	at := map[string]bool{}
	var out []problem
	for _, e := range bad.list {
		p := problem{path: idx.pathAt(e.tok.Position), msg: e.msg, pos: e.tok.Position}
		at[p.path] = true
		out = append(out, p)
	}
	for _, p := range errs {
		if !at[p.path] {
			out = append(out, p)
		}
	}
	return out
}

// place gives problems their positions, in the order they are written.
func (idx *index) place(name string, list []problem) []*Error {
	out := make([]*Error, 0, len(list))
	for _, p := range list {
		line, col := idx.positionOf(p.path)
		if p.pos != nil {
			line, col = p.pos.Line, p.pos.Column
		}
		if p.atOffset {
			if l, c, ok := idx.valuePosition(p.path, p.offset); ok {
				line, col = l, c
			}
		}
		out = append(out, &Error{File: name, Line: line, Column: col, Path: p.path, Msg: p.msg})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Column < out[j].Column
	})
	return out
}

// yamlError turns a decoder error into an Error with a position and a path.
func yamlError(name string, idx *index, err error) *Error {
	var pe *posError
	if errors.As(err, &pe) {
		e := &Error{File: name, Line: pe.tok.Position.Line, Column: pe.tok.Position.Column, Msg: pe.msg}
		e.Path = idx.pathAt(pe.tok.Position)
		return e
	}
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return &Error{File: name, Msg: err.Error()}
	}
	tok := ye.GetToken()
	e := &Error{File: name, Msg: ye.GetMessage()}
	if tok != nil && tok.Position != nil {
		e.Line, e.Column = tok.Position.Line, tok.Position.Column
		e.Path = idx.pathAt(tok.Position)
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		e.Msg = fmt.Sprintf("expected %s, got %s", kindName(te.DstType), kindName(te.SrcType))
	}
	var ne *yaml.UnexpectedNodeTypeError
	if errors.As(err, &ne) {
		e.Msg = fmt.Sprintf("expected %s, got %s", nodeTypeName(ne.Expected), nodeTypeName(ne.Actual))
	}
	var ue *yaml.UnknownFieldError
	if errors.As(err, &ue) && tok != nil {
		e.Msg = fmt.Sprintf("unknown key %q", tok.Value)
	}
	return e
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "nothing"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Pointer:
		return kindName(t.Elem())
	}
	return t.String()
}

func nodeTypeName(t ast.NodeType) string {
	switch t {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.StringType, ast.LiteralType:
		return "a string"
	case ast.IntegerType:
		return "a whole number"
	case ast.BoolType:
		return "true or false"
	case ast.NullType:
		return "nothing"
	}
	return t.String()
}

// posError is returned by the value types' decoders: it carries the token so
// the loader can place the error.
type posError struct {
	tok *token.Token
	msg string
}

func (e *posError) Error() string { return e.msg }

func scalar(node ast.Node) (string, *posError) {
	switch n := node.(type) {
	case *ast.StringNode:
		return n.Value, nil
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.LiteralNode:
		return node.GetToken().Value, nil
	}
	return "", &posError{tok: node.GetToken(), msg: "expected a string"}
}

// UnmarshalYAML decodes an address with prefix length.
func (p *Prefix) UnmarshalYAML(node ast.Node) error {
	s, perr := scalar(node)
	if perr != nil {
		return perr
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return &posError{tok: node.GetToken(), msg: fmt.Sprintf("%q is not an address with prefix length (like 192.0.2.10/24 or 2001:db8::10/64)", s)}
	}
	p.Prefix = pfx
	return nil
}

// MarshalYAML writes the prefix in its usual text form.
func (p Prefix) MarshalYAML() (any, error) { return p.String(), nil }

// UnmarshalYAML decodes a duration such as 90s or 15m.
func (d *Duration) UnmarshalYAML(node ast.Node) error {
	s, perr := scalar(node)
	if perr != nil {
		return perr
	}
	v, err := parseDuration(s)
	if err != nil || v < 0 {
		return &posError{tok: node.GetToken(), msg: fmt.Sprintf("%q is not a duration (like 90s, 15m, 1h30m or 5d)", s)}
	}
	d.Duration = v
	return nil
}

// parseDuration is time.ParseDuration plus a leading count of days ("5d",
// "1d12h"): queue lifetimes are written in days, as in Postfix.
func parseDuration(s string) (time.Duration, error) {
	if i := strings.IndexByte(s, 'd'); i > 0 {
		days, err := strconv.ParseUint(s[:i], 10, 16)
		if err != nil {
			return 0, err
		}
		rest := time.Duration(0)
		if s[i+1:] != "" {
			if rest, err = time.ParseDuration(s[i+1:]); err != nil {
				return 0, err
			}
		}
		return time.Duration(days)*24*time.Hour + rest, nil
	}
	return time.ParseDuration(s)
}

// UnmarshalYAML decodes a size such as 25MiB, 10MB, 512KiB or 1000000.
func (z *Size) UnmarshalYAML(node ast.Node) error {
	s, perr := scalar(node)
	if perr != nil {
		return perr
	}
	v, ok := parseSize(s)
	if !ok {
		return &posError{tok: node.GetToken(), msg: fmt.Sprintf("%q is not a size (like 25MiB, 10MB, 512KiB or a number of bytes)", s)}
	}
	z.Bytes = v
	return nil
}

func parseSize(s string) (int64, bool) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<40)/mult {
		return 0, false
	}
	return v * mult, true
}

// MarshalYAML writes the size in bytes.
func (z Size) MarshalYAML() (any, error) { return z.Bytes, nil }

// MarshalYAML writes the duration in Go's notation.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML decodes 25 or "10045-10049".
func (p *PortRange) UnmarshalYAML(node ast.Node) error {
	s, perr := scalar(node)
	if perr != nil {
		return perr
	}
	bad := &posError{tok: node.GetToken(), msg: fmt.Sprintf("%q is not a port (1-65535) or a range of ports like 10045-10049", s)}
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || a == 0 || b == 0 || a > b {
		return bad
	}
	p.From, p.To = uint16(a), uint16(b)
	return nil
}

// String is the port or range as written.
func (p PortRange) String() string {
	if p.From == p.To {
		return strconv.Itoa(int(p.From))
	}
	return fmt.Sprintf("%d-%d", p.From, p.To)
}

// MarshalYAML writes the port or range.
func (p PortRange) MarshalYAML() (any, error) { return p.String(), nil }

// index maps field paths to positions in the file and back.
type index struct {
	locs  []loc
	lines []string // the file's text, to place errors inside a value
}

type loc struct {
	path      string
	line, col int
	tok       *token.Token
}

func indexFile(f *ast.File) *index {
	idx := &index{}
	for _, d := range f.Docs {
		idx.walk(d.Body, "")
	}
	return idx
}

func (idx *index) add(path string, tok *token.Token) {
	if tok == nil || tok.Position == nil {
		return
	}
	idx.locs = append(idx.locs, loc{path: path, line: tok.Position.Line, col: tok.Position.Column, tok: tok})
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func (idx *index) walk(node ast.Node, path string) {
	switch n := node.(type) {
	case nil:
	case *ast.MappingNode:
		for _, v := range n.Values {
			idx.walk(v, path)
		}
	case *ast.MappingValueNode:
		key := n.Key.GetToken().Value
		p := join(path, key)
		// A scalar's errors are about its value, so its value's
		// position comes first; a section's errors point at its key.
		switch n.Value.(type) {
		case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
			idx.add(p, n.Key.GetToken())
			idx.add(p, n.Value.GetToken())
		default:
			idx.add(p, n.Value.GetToken())
			idx.add(p, n.Key.GetToken())
		}
		idx.walk(n.Value, p)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			p := fmt.Sprintf("%s[%d]", path, i)
			idx.add(p, startToken(v))
			idx.walk(v, p)
		}
	case *ast.TagNode:
		idx.walk(n.Value, path)
	case *ast.AnchorNode:
		idx.walk(n.Value, path)
	}
}

// startToken is where a node begins as a reader sees it: a block mapping
// begins at its first key, not at its first ':'.
func startToken(n ast.Node) *token.Token {
	switch m := n.(type) {
	case *ast.MappingValueNode:
		return m.Key.GetToken()
	case *ast.MappingNode:
		if !m.IsFlowStyle && len(m.Values) > 0 {
			return m.Values[0].Key.GetToken()
		}
	}
	return n.GetToken()
}

// pathAt names the field at a position: the deepest path that starts there,
// or else the nearest one before it.
func (idx *index) pathAt(pos *token.Position) string {
	if idx == nil || pos == nil {
		return ""
	}
	best, bestExact := "", false
	bestLine, bestCol := 0, 0
	for _, l := range idx.locs {
		exact := l.line == pos.Line && l.col == pos.Column
		switch {
		case exact && (!bestExact || len(l.path) > len(best)):
			best, bestExact = l.path, true
		case !bestExact && (l.line < pos.Line || l.line == pos.Line && l.col <= pos.Column) &&
			(l.line > bestLine || l.line == bestLine && l.col >= bestCol):
			best, bestLine, bestCol = l.path, l.line, l.col
		}
	}
	return best
}

// positionOf finds where a field is written; for a field that is absent, where
// its nearest written parent is.
func (idx *index) positionOf(path string) (line, col int) {
	for p := path; p != ""; p = parentPath(p) {
		for _, l := range idx.locs {
			if l.path == p {
				return l.line, l.col
			}
		}
	}
	return 0, 0
}

// valuePosition finds where the byte offset bytes into path's string
// value is written: the value must be a scalar on one line (plain, or
// quoted with its escapes undone as the decoder does); ok is false when it
// is not, and the caller names the value's start instead.
func (idx *index) valuePosition(path string, offset int) (line, col int, ok bool) {
	for _, l := range idx.locs {
		if l.path != path {
			continue
		}
		if l.tok == nil || l.line < 1 || l.line > len(idx.lines) {
			return 0, 0, false
		}
		c, ok := valueColumn(idx.lines[l.line-1], l.col, l.tok.Type, offset)
		return l.line, c, ok
	}
	return 0, 0, false
}

// valueColumn walks a scalar written at column col of text to the byte
// offset into its value.
func valueColumn(text string, col int, typ token.Type, offset int) (int, bool) {
	r := []rune(text)
	i := col - 1
	quoted := typ == token.SingleQuoteType || typ == token.DoubleQuoteType
	switch {
	case typ == token.StringType:
	case quoted:
		i++ // past the opening quote
	default:
		return 0, false
	}
	for n := 0; n < offset; {
		if i < 0 || i >= len(r) {
			return 0, false // the value goes on past this line
		}
		c := r[i]
		switch {
		case typ == token.SingleQuoteType && c == '\'':
			if i+1 >= len(r) || r[i+1] != '\'' {
				return 0, false // the closing quote
			}
			i, n = i+2, n+1
		case typ == token.DoubleQuoteType && c == '"':
			return 0, false
		case typ == token.DoubleQuoteType && c == '\\' && i+1 < len(r):
			width := map[rune]int{'x': 2, 'u': 4, 'U': 8}[r[i+1]]
			size := 1
			if width > 0 && i+2+width <= len(r) {
				if v, err := strconv.ParseUint(string(r[i+2:i+2+width]), 16, 32); err == nil {
					size = utf8.RuneLen(rune(v))
				}
			}
			i, n = i+2+width, n+max(size, 1)
		default:
			i, n = i+1, n+utf8.RuneLen(c)
		}
	}
	return i + 1, true
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Reread loads the config again for a service told to reload. PID 1 has
// validated the file already; should it be invalid after all, the error is
// logged and the service keeps running with what it has (ok is false).
func Reread(path string, log *slog.Logger) (*Config, bool) {
	c, _, err := Load(path)
	if err != nil {
		log.Error("new config rejected; keeping the running one", "err", err)
		return nil, false
	}
	log.Info("config reloaded")
	return c, true
}
