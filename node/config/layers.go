package config

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

	"github.com/ekisa-team/syn4pse/node/models/store"
)

const (
	// defaultFile is read from the working directory when no file is named.
	defaultFile = "syn4pse.toml"
	// configEnv names the config file; it is not a key of the configuration.
	configEnv = "SYN4PSE_CONFIG"
	// configFlag names the config file on the command line.
	configFlag = "config"
)

// flagKeys are the command-line flags RegisterFlags defines, each setting one key.
var flagKeys = []struct{ flag, key, usage string }{
	{"data-dir", "data_dir", "directory for the node's identity, model cache and known peers"},
	{"host", "server.host", "address the HTTP and gRPC servers listen on"},
	{"http-port", "server.http_port", "port of the HTTP API (OpenAI-compatible); 0 picks a free port"},
	{"grpc-port", "server.grpc_port", "port of the gRPC API; 0 picks a free port"},
	{"log-level", "log.level", "log level: debug, info, warn or error"},
}

// RegisterFlags defines the configuration's flags on fs: --config and one flag per key that
// is commonly set per run. Their defaults are the built-in ones, for --help; only flags the
// user sets override the file and the environment. Call it once per FlagSet.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String(configFlag, "", "config file (default ./syn4pse.toml when it exists) [$"+configEnv+"]")
	defaults := defaultValues()
	for _, f := range flagKeys {
		usage := fmt.Sprintf("%s [$%s]", f.usage, envName(strings.Split(f.key, ".")))
		switch def := defaults[f.key].(type) {
		case int:
			fs.Int(f.flag, def, usage)
		case string:
			fs.String(f.flag, def, usage)
		default:
			panic(fmt.Sprintf("config: flag --%s: no flag type for %T", f.flag, def))
		}
	}
}

// layerValues is what one layer sets: checked, in decode's types, nested by key.
type layerValues struct {
	values map[string]any
	errs   []error
}

// fileLayer is the config file's layer; only the file declares models.
type fileLayer struct {
	layerValues
	path string // absolute
	name string // how messages name the file
}

// source says how messages name a layer's keys and where its relative paths start.
type source struct {
	name    string                     // the layer, for unknown keys: the file's name
	label   func(path []string) string // one key: "syn4pse.toml: server.http_port", "--http-port"
	baseDir string
}

// readFile reads and checks the TOML file at path. A missing or unparsable file is an error
// of its own; unknown keys and bad values are collected in the layer's errs.
func readFile(path, name string) (*fileLayer, error) {
	fk := koanf.New(".")
	if err := fk.Load(file.Provider(path), toml.Parser()); err != nil {
		return nil, fileError(name, err)
	}
	src := &source{
		name:    name,
		label:   func(p []string) string { return name + ": " + keyString(p) },
		baseDir: filepath.Dir(path),
	}
	l := &fileLayer{path: path, name: name}
	l.values = src.check(schema, fk.Raw(), nil, &l.errs).(map[string]any)
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

// readEnv reads the SYN4PSE_* variables. Names map to keys through the set of known keys
// (the static ones and those of the model tables in the file), since "_" both separates
// and joins words: SYN4PSE_SERVER_HTTP_PORT is server.http_port. An empty variable counts
// as unset; an unknown one is an error.
func readEnv(environ []string, fromFile *fileLayer, cwd string) *layerValues {
	l := &layerValues{values: map[string]any{}}
	vars, err := env.Provider("", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
	}).Read()
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("config: environment: %w", err))
		return l
	}
	var declared map[string]any
	if fromFile != nil {
		declared = fromFile.values
	}
	known := map[string][][]string{}
	envKeys(schema, nil, declared, known)

	raw := map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		if slices.Contains(clientEnv, name) {
			continue
		}
		key := name
		if alias, ok := envAliases[name]; ok {
			if v, _ := vars[alias].(string); v != "" {
				l.errs = append(l.errs, invalidf("%s and %s are both set: they are the same setting; set one", name, alias))
				continue
			}
			key = alias
		}
		paths := known[key]
		switch {
		case len(paths) == 0:
			l.errs = append(l.errs, unknownEnv(name, known))
			continue
		case len(paths) > 1:
			a, b := keyString(paths[0]), keyString(paths[1])
			if b < a {
				a, b = b, a
			}
			l.errs = append(l.errs, invalidf("%s is ambiguous: it names %s and %s; rename one of the models", name, a, b))
			continue
		}
		if value, _ := vars[name].(string); value != "" {
			setPath(raw, paths[0], value)
		}
	}
	src := &source{name: "environment", label: envName, baseDir: cwd}
	l.values = src.check(schema, raw, nil, &l.errs).(map[string]any)
	return l
}

// envKeys adds to known the environment variable of every key under n: the fixed keys and,
// for tables of named entries, the entries declared in the file.
func envKeys(n *node, path []string, declared any, known map[string][][]string) {
	if n.field != nil {
		name := envName(path)
		known[name] = append(known[name], path)
		return
	}
	table, _ := declared.(map[string]any)
	for key, child := range n.children {
		envKeys(child, append(slices.Clip(path), key), table[key], known)
	}
	if n.each == nil {
		return
	}
	for key, entry := range table {
		if _, fixed := n.children[key]; !fixed {
			envKeys(n.each, append(slices.Clip(path), key), entry, known)
		}
	}
}

// unknownEnv is the error for a SYN4PSE_ variable that names no key.
func unknownEnv(name string, known map[string][][]string) error {
	short := strings.TrimPrefix(name, envPrefix)
	var candidates []string
	for k := range known {
		candidates = append(candidates, strings.TrimPrefix(k, envPrefix))
	}
	slices.Sort(candidates)
	hint := ""
	if strings.HasPrefix(short, "CGO_") {
		// Build settings once shared this prefix; a shell that still exports one would
		// otherwise stop every node it starts.
		hint = " (a build variable of older Taskfiles, not a node setting: unset it; builds take MARCH=native now, e.g. `task build MARCH=native`)"
	} else if s := suggest(short, candidates); s != "" {
		hint = fmt.Sprintf(" (did you mean %s%s?)", envPrefix, s)
	} else if strings.HasPrefix(short, "MODELS_") || strings.HasPrefix(short, "BACKENDS_") {
		hint = " (models are declared in the config file; the environment only overrides their keys)"
	}
	return invalidf("unknown environment variable %s%s", name, hint)
}

// readFlags reads the flags of RegisterFlags that the user set; other flags in fs are not
// the configuration's and are left alone.
func readFlags(fs *pflag.FlagSet, cwd string) *layerValues {
	l := &layerValues{values: map[string]any{}}
	if fs == nil {
		return l
	}
	keyOf := map[string]string{}
	flagOf := map[string]string{}
	for _, f := range flagKeys {
		keyOf[f.flag], flagOf[f.key] = f.key, f.flag
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
		l.errs = append(l.errs, fmt.Errorf("config: flags: %w", err))
		return l
	}
	src := &source{
		name:    "flags",
		label:   func(p []string) string { return "--" + flagOf[strings.Join(p, ".")] },
		baseDir: cwd,
	}
	l.values = src.check(schema, raw, nil, &l.errs).(map[string]any)
	return l
}

// check walks raw along the schema node n and returns its values in decode's types. Every
// unknown key and bad value adds an error to errs and is left out.
func (s *source) check(n *node, raw any, path []string, errs *[]error) any {
	if n.field != nil {
		v, err := n.field.parse(raw, s.baseDir)
		if err != nil {
			*errs = append(*errs, &invalidError{msg: s.label(path) + ": " + err.Error()})
			return nil
		}
		return v
	}
	table, ok := raw.(map[string]any)
	if !ok {
		*errs = append(*errs, invalidf("%s: want a table, got %s", s.label(path), describe(raw)))
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
		if n.modelNames && !store.ValidModelName(key) {
			*errs = append(*errs, invalidf("%s: %q is not a valid model name (letters, digits and . _ : -, up to 128)",
				s.label(keyPath), key))
			continue
		}
		if v := s.check(child, table[key], keyPath, errs); v != nil {
			out[key] = v
		}
	}
	return out
}

// unknown is the error for a key the schema does not have, with the likely intended one.
func (s *source) unknown(n *node, path []string) error {
	key := path[len(path)-1]
	if n.keysAre == "modality" {
		return invalidf("%s: %s: unknown modality %q (want one of %s)",
			s.name, keyString(path), key, strings.Join(modalities, ", "))
	}
	hint := ""
	if alt := n.aliases[key]; alt != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", keyString(append(path[:len(path)-1:len(path)-1], alt)))
	} else if alt := suggest(key, slices.Sorted(maps.Keys(n.children))); alt != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", keyString(append(path[:len(path)-1:len(path)-1], alt)))
	}
	return invalidf("%s: unknown key %q%s", s.name, keyString(path), hint)
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
