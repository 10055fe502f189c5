package schema

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	gotoml "github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"
)

// Layer is what one source sets: its values, checked and in the types their fields parse to,
// nested by key, and an error for every unknown key and bad value, which Values leaves out.
type Layer struct {
	Values map[string]any // nested tables are map[string]any too
	Errs   []error        // those about the configuration itself wrap ErrInvalid
}

// Env says how environment variables name keys: Prefix and the key path in upper case.
type Env struct {
	// Prefix starts every variable of the configuration: "SYN4PSE_".
	Prefix string
	// Ignore are variables with Prefix that are not keys, neither read nor called unknown.
	Ignore []string
	// Aliases are shorter names of some variables, and the variable each stands for.
	Aliases map[string]string
	// Explain, when set, is the hint for an unknown variable, given its name without Prefix
	// and the closest known one ("" when none is close); "" keeps the default hint, which
	// names the closest variable.
	Explain func(short, closest string) string
}

// Flag is a command-line flag that sets one key.
type Flag struct {
	Name  string // without "--"
	Key   string // the key path, dotted
	Usage string // for --help
}

// source says how messages name a layer's keys and where its relative paths start.
type source struct {
	name    string                     // the layer, for unknown keys: the file's name
	label   func(path []string) string // one key: "syn4pse.toml: server.http_port", "--http-port"
	baseDir string
}

// ReadFile reads the TOML file at path and checks it against root; name is how messages name
// the file. A missing or unparsable file is an error of its own; unknown keys and bad values
// are collected in the layer's Errs.
func ReadFile(root *Node, path, name string) (*Layer, error) {
	fk := koanf.New(".")
	if err := fk.Load(file.Provider(path), toml.Parser()); err != nil {
		return nil, fileError(name, err)
	}
	src := &source{
		name:    name,
		label:   func(p []string) string { return name + ": " + KeyString(p) },
		baseDir: filepath.Dir(path),
	}
	l := &Layer{}
	l.Values = src.check(root, fk.Raw(), nil, &l.Errs).(map[string]any)
	return l, nil
}

// fileError says why the file could not be read, with the line and column of a syntax error.
func fileError(name string, err error) error {
	var decodeErr *gotoml.DecodeError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &invalidError{msg: fmt.Sprintf("config file %s does not exist", name), cause: err}
	case errors.As(err, &decodeErr):
		row, col := decodeErr.Position()
		msg := strings.TrimPrefix(decodeErr.Error(), "toml: ")
		return &invalidError{msg: fmt.Sprintf("%s:%d:%d: %s", name, row, col, msg), cause: err}
	default:
		return &invalidError{msg: fmt.Sprintf("config file %s: %v", name, err), cause: err}
	}
}

// Name is the environment variable of a key path: Prefix and the path in upper case, with
// every character other than a letter or digit written as "_".
func (e *Env) Name(path []string) string {
	var b strings.Builder
	b.WriteString(e.Prefix)
	for i, part := range path {
		if i > 0 {
			b.WriteByte('_')
		}
		for _, r := range part {
			switch {
			case r >= 'a' && r <= 'z':
				b.WriteRune(r - 'a' + 'A')
			case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
				b.WriteRune(r)
			default:
				b.WriteByte('_')
			}
		}
	}
	return b.String()
}

// Read reads the variables of environ that start with Prefix and checks them against root.
// Names map to keys through the set of known keys (the fixed ones and those of the entries
// declared, the file's values), since "_" both separates and joins words:
// SYN4PSE_SERVER_HTTP_PORT is server.http_port. An empty variable counts as unset; an unknown
// one is an error. Relative paths start at cwd.
func (e *Env) Read(root *Node, environ []string, declared map[string]any, cwd string) *Layer {
	l := &Layer{Values: map[string]any{}}
	vars, err := env.Provider("", env.Opt{
		Prefix:      e.Prefix,
		EnvironFunc: func() []string { return environ },
	}).Read()
	if err != nil {
		l.Errs = append(l.Errs, fmt.Errorf("config: environment: %w", err))
		return l
	}
	known := map[string][][]string{}
	e.keys(root, nil, declared, known)

	raw := map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		if slices.Contains(e.Ignore, name) {
			continue
		}
		key := name
		if alias, ok := e.Aliases[name]; ok {
			if v, _ := vars[alias].(string); v != "" {
				l.Errs = append(l.Errs, Invalidf("%s and %s are both set: they are the same setting; set one", name, alias))
				continue
			}
			key = alias
		}
		paths := known[key]
		switch {
		case len(paths) == 0:
			l.Errs = append(l.Errs, e.unknown(name, known))
			continue
		case len(paths) > 1:
			a, b := KeyString(paths[0]), KeyString(paths[1])
			if b < a {
				a, b = b, a
			}
			l.Errs = append(l.Errs, Invalidf("%s is ambiguous: it names %s and %s; rename one of the models", name, a, b))
			continue
		}
		if value, _ := vars[name].(string); value != "" {
			setPath(raw, paths[0], value)
		}
	}
	src := &source{name: "environment", label: e.Name, baseDir: cwd}
	l.Values = src.check(root, raw, nil, &l.Errs).(map[string]any)
	return l
}

// keys adds to known the environment variable of every key under n: the fixed keys and,
// for tables of named entries, the entries declared.
func (e *Env) keys(n *Node, path []string, declared any, known map[string][][]string) {
	if n.Field != nil {
		name := e.Name(path)
		known[name] = append(known[name], path)
		return
	}
	table, _ := declared.(map[string]any)
	for key, child := range n.Children {
		e.keys(child, append(slices.Clip(path), key), table[key], known)
	}
	if n.Each == nil {
		return
	}
	for key, entry := range table {
		if _, fixed := n.Children[key]; !fixed {
			e.keys(n.Each, append(slices.Clip(path), key), entry, known)
		}
	}
}

// unknown is the error for a variable with Prefix that names no key.
func (e *Env) unknown(name string, known map[string][][]string) error {
	short := strings.TrimPrefix(name, e.Prefix)
	var candidates []string
	for k := range known {
		candidates = append(candidates, strings.TrimPrefix(k, e.Prefix))
	}
	slices.Sort(candidates)
	closest := suggest(short, candidates)
	hint := ""
	if e.Explain != nil {
		hint = e.Explain(short, closest)
	}
	if hint == "" && closest != "" {
		hint = fmt.Sprintf(" (did you mean %s%s?)", e.Prefix, closest)
	}
	return Invalidf("unknown environment variable %s%s", name, hint)
}

// ReadFlags reads the flags among flags that the user set in fs and checks them against root;
// other flags in fs are left alone. Relative paths start at cwd.
func ReadFlags(root *Node, fs *pflag.FlagSet, flags []Flag, cwd string) *Layer {
	l := &Layer{Values: map[string]any{}}
	if fs == nil {
		return l
	}
	keyOf := map[string]string{}
	flagOf := map[string]string{}
	for _, f := range flags {
		keyOf[f.Name], flagOf[f.Key] = f.Key, f.Name
	}
	// With no koanf instance given, posflag keeps only the flags marked Changed.
	raw, err := posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		key, ok := keyOf[f.Name]
		if !ok {
			return "", nil
		}
		return key, posflag.FlagVal(fs, f)
	}).Read()
	if err != nil {
		l.Errs = append(l.Errs, fmt.Errorf("config: flags: %w", err))
		return l
	}
	src := &source{
		name:    "flags",
		label:   func(p []string) string { return "--" + flagOf[strings.Join(p, ".")] },
		baseDir: cwd,
	}
	l.Values = src.check(root, raw, nil, &l.Errs).(map[string]any)
	return l
}

// check walks raw along the schema node n and returns its values in the fields' types. Every
// unknown key and bad value adds an error to errs and is left out.
func (s *source) check(n *Node, raw any, path []string, errs *[]error) any {
	if n.Field != nil {
		v, err := n.Field.parse(raw, s.baseDir)
		if err != nil {
			*errs = append(*errs, &invalidError{msg: s.label(path) + ": " + err.Error()})
			return nil
		}
		return v
	}
	table, ok := raw.(map[string]any)
	if !ok {
		*errs = append(*errs, Invalidf("%s: want a table, got %s", s.label(path), describe(raw)))
		return nil
	}
	out := make(map[string]any, len(table))
	for _, key := range slices.Sorted(maps.Keys(table)) {
		keyPath := append(slices.Clip(path), key)
		child := n.child(key)
		if child == nil {
			*errs = append(*errs, s.unknown(n, keyPath))
			continue
		}
		if n.EntryName != nil {
			if err := n.EntryName(key); err != nil {
				*errs = append(*errs, Invalidf("%s: %v", s.label(keyPath), err))
				continue
			}
		}
		if v := s.check(child, table[key], keyPath, errs); v != nil {
			out[key] = v
		}
	}
	return out
}

// unknown is the error for a key the schema does not have, with the likely intended one.
func (s *source) unknown(n *Node, path []string) error {
	key := path[len(path)-1]
	if n.KeysAre != "" {
		return Invalidf("%s: %s: unknown %s %q (want one of %s)",
			s.name, KeyString(path), n.KeysAre, key, strings.Join(n.KeysWant, ", "))
	}
	hint := ""
	if alt := n.Aliases[key]; alt != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", KeyString(append(path[:len(path)-1:len(path)-1], alt)))
	} else if alt := suggest(key, slices.Sorted(maps.Keys(n.Children))); alt != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", KeyString(append(path[:len(path)-1:len(path)-1], alt)))
	}
	return Invalidf("%s: unknown key %q%s", s.name, KeyString(path), hint)
}

// setPath sets value at path in the nested map m, making tables on the way.
func setPath(m map[string]any, path []string, value any) {
	for _, key := range path[:len(path)-1] {
		next, ok := m[key].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[key] = next
		}
		m = next
	}
	m[path[len(path)-1]] = value
}
