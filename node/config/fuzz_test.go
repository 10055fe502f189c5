package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzLoad loads a fuzzed syn4pse.toml with fuzzed SYN4PSE_* variables (one NAME=value per
// line of env). Load never panics and answers either a Config or an error that wraps
// ErrInvalid, the mark of a message written for the user; a Config it returns holds ports a
// listener can take, an absolute data dir and its models sorted by unique name.
func FuzzLoad(f *testing.F) {
	committed, err := os.ReadFile(filepath.Join("..", "..", "syn4pse.toml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(committed), "")
	f.Add(string(committed), "SYN4PSE_SERVER_HTTP_PORT=9100\nSYN4PSE_P2P_LISTEN=/ip4/0.0.0.0/tcp/1,/ip6/::/tcp/1\nSYN4PSE_LOG_LEVEL=DEBUG")
	f.Add("data_dir = \"state\"\n[server]\nhost = \"0.0.0.0\"\nhttp_port = 9000\nshutdown_timeout = \"5s\"\n[log]\nlevel = \"DEBUG\"\nformat = \"json\"\n", "")
	f.Add("[server]\nhttp_port = 9000\ngrpc_port = 9001\n[models.tiny]\npath = \"a.gguf\"\n",
		"SYN4PSE_MODELS_TINY_PATH=b.gguf\nSYN4PSE_MODELS_TINY_PARALLEL=4\nSYN4PSE_MODELS_TINY_ENABLED=false")
	f.Add("[models]\nkeep_alive = \"-1\"\nmax_memory = \"12GiB\"\nallow_remote = [\"load\", \"pull\"]\n[models.\"qwen2.5\"]\nsource = \"hf://o/r/f.gguf@main\"\nsha256 = \"sha256:"+strings.Repeat("ab", 32)+"\"\ncontext_length = 4096\n", "")
	f.Add("[server]\nhttp_port = 8080\ngrpc_port = 8080\n", "SYN4PSE_SERVER_GRPC_PORT=99999")
	f.Add("[server\nhttp_port = ", "SYN4PSE_NOPE=1\nSYN4PSE_=\n=x")
	f.Add("data_dir = \"~user/x\"\n[p2p]\nbootstrap = \"/ip4/1.2.3.4\"\nname = \"bad name!\"\n", "SYN4PSE_MODELS_X_PATH=\x00")

	f.Fuzz(func(t *testing.T, file, env string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "syn4pse.toml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		var environ []string
		if env != "" {
			environ = strings.Split(env, "\n")
		}
		cfg, err := Load(LoadOptions{Path: path, Env: environ})
		switch {
		case err != nil && cfg != nil:
			t.Fatalf("both a Config and an error: %v", err)
		case err != nil:
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		case cfg == nil:
			t.Fatal("neither a Config nor an error")
		}
		for _, p := range []int{cfg.Server.HTTPPort, cfg.Server.GRPCPort, cfg.Server.OllamaPort} {
			if p < 0 || p > 65535 {
				t.Fatalf("port %d", p)
			}
		}
		if !filepath.IsAbs(cfg.DataDir) || cfg.File != path {
			t.Fatalf("data dir %q, file %q", cfg.DataDir, cfg.File)
		}
		if !slices.IsSortedFunc(cfg.Models, func(a, b Model) int { return strings.Compare(a.Name, b.Name) }) {
			t.Fatal("models not sorted by name")
		}
		for i := 1; i < len(cfg.Models); i++ {
			if cfg.Models[i].Name == cfg.Models[i-1].Name {
				t.Fatalf("model %q declared twice", cfg.Models[i].Name)
			}
		}
	})
}
