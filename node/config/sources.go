package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ekisa-team/syn4pse/node/config/schema"
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
var flagKeys = []schema.Flag{
	{Name: "data-dir", Key: "data_dir", Usage: "directory for the node's identity, model cache and known peers"},
	{Name: "host", Key: "server.host", Usage: "address the HTTP and gRPC servers listen on"},
	{Name: "http-port", Key: "server.http_port", Usage: "port of the HTTP API (OpenAI-compatible); 0 picks a free port"},
	{Name: "grpc-port", Key: "server.grpc_port", Usage: "port of the gRPC API; 0 picks a free port"},
	{Name: "log-level", Key: "log.level", Usage: "log level: debug, info, warn or error"},
}

// environment is how SYN4PSE_* variables name keys.
var environment = &schema.Env{
	Prefix:  "SYN4PSE_",
	Ignore:  clientEnv,
	Aliases: envAliases,
	Explain: explainEnv,
}

// explainEnv is the hint for an unknown SYN4PSE_ variable, short its name without the prefix,
// where a better one than the closest variable's name exists.
func explainEnv(short, closest string) string {
	switch {
	case strings.HasPrefix(short, "CGO_"):
		// Build settings once shared this prefix; a shell that still exports one would
		// otherwise stop every node it starts.
		return " (a build variable of older Taskfiles, not a node setting: unset it; builds take MARCH=native now, e.g. `task build MARCH=native`)"
	case closest == "" && (strings.HasPrefix(short, "MODELS_") || strings.HasPrefix(short, "BACKENDS_")):
		return " (models are declared in the config file; the environment only overrides their keys)"
	}
	return ""
}

// RegisterFlags defines the configuration's flags on fs: --config and one flag per key that
// is commonly set per run. Their defaults are the built-in ones, for --help; only flags the
// user sets override the file and the environment. Call it once per FlagSet.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String(configFlag, "", "config file (default ./syn4pse.toml when it exists) [$"+configEnv+"]")
	defaults := defaultValues()
	for _, f := range flagKeys {
		usage := fmt.Sprintf("%s [$%s]", f.Usage, environment.Name(strings.Split(f.Key, ".")))
		switch def := defaults[f.Key].(type) {
		case int:
			fs.Int(f.Name, def, usage)
		case string:
			fs.String(f.Name, def, usage)
		default:
			panic(fmt.Sprintf("config: flag --%s: no flag type for %T", f.Name, def))
		}
	}
}

// configPath picks the config file; "" means none.
func configPath(opts LoadOptions) string {
	if opts.Path != "" {
		return opts.Path
	}
	if opts.Flags != nil {
		if f := opts.Flags.Lookup(configFlag); f != nil && f.Changed && f.Value.String() != "" {
			return f.Value.String()
		}
	}
	if v, ok := lookupEnv(opts.Env, configEnv); ok && v != "" {
		return v
	}
	if info, err := os.Stat(defaultFile); err == nil && !info.IsDir() {
		return defaultFile
	}
	return ""
}

// displayName is how messages name the config file: as short as is still unambiguous.
func displayName(abs, cwd string) string {
	if rel, err := filepath.Rel(cwd, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return rel
	}
	return abs
}

// lookupEnv finds name in an environ-style list; the last one wins, as in os.Getenv.
func lookupEnv(environ []string, name string) (string, bool) {
	for _, kv := range slices.Backward(environ) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}
