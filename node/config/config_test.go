package config

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/ekisa-team/syn4pse/node/config/schema"
)

// writeConfig writes content as syn4pse.toml in a fresh directory and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "syn4pse.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// parseFlags is a FlagSet from RegisterFlags after parsing args, as the CLI would.
func parseFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	fs.Bool("verbose", false, "a flag of the CLI's own, which Load must ignore")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// defaultConfig is the Config that Load gives with nothing set.
func defaultConfig(t *testing.T) Config {
	t.Helper()
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		DataDir: filepath.Join(home, ".syn4pse"),
		Server: Server{Host: "127.0.0.1", HTTPPort: 8080, GRPCPort: 50051, ShutdownTimeout: 30 * time.Second, MaxAudio: 30 * time.Minute,
			Limits: Limits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute,
				WriteTimeout: time.Minute, MaxRequestBody: 32 << 20, MaxTokens: 32768, MaxMessages: 1024, MaxPromptBytes: 8 << 20,
				GRPCMaxMessage: 64 << 20, GRPCMaxStreams: 256, GRPCKeepaliveMin: 10 * time.Second}},
		Log: Log{Level: "info", Format: "text"},
		P2P: P2P{
			Listen: []string{"/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"}, Bootstrap: []string{}, Allow: []string{},
			MDNS: true, NAT: true, AnnounceInterval: 3 * time.Second, PeerTTL: 8 * time.Second,
			PeerMaxRequests: 4, PeerRate: 10, PeerMaxTransfers: 2,
		},
		Router:    Router{MaxHops: 1, BanAfter: 5, BanDuration: 2 * time.Minute},
		Engine:    Engine{CPUVariant: "auto"},
		Lifecycle: Lifecycle{KeepAlive: 5 * time.Minute, AllowRemote: []string{"load", "unload"}, MaxQueue: 64, LoadProbe: true},
	}
}

func TestListKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "syn4pse.toml")
	if err := os.WriteFile(path, []byte("[p2p]\nbootstrap = [\"/ip4/127.0.0.1/tcp/4001/p2p/QmA\"]\nallow = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{Path: path, Env: []string{"SYN4PSE_P2P_ALLOW=a, b,,c", "SYN4PSE_P2P_LISTEN=/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.P2P.Bootstrap) != 1 || strings.Join(cfg.P2P.Allow, "|") != "a|b|c" || strings.Join(cfg.P2P.Listen, "|") != "/ip4/127.0.0.1/tcp/0" {
		t.Fatalf("p2p = %+v", cfg.P2P)
	}
	if err := os.WriteFile(path, []byte("[p2p]\nallow = [1, 2]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(LoadOptions{Path: path}); err == nil || !strings.Contains(err.Error(), "p2p.allow") {
		t.Fatalf("err = %v, want one naming p2p.allow", err)
	}
}

// llm is a Model with the defaults of the model keys.
func llm(name, path, declared string) Model {
	return Model{
		Name: name, Modality: "llm", Engine: "llama_cpp", Path: path, Enabled: true,
		BatchSize: 512, GPULayers: -1, MainGPU: -1, Parallel: 0, FlashAttention: "auto", Declared: declared,
	}
}

func TestLoadLayers(t *testing.T) {
	cwd := t.TempDir()
	t.Chdir(cwd) // no ./syn4pse.toml here, and relative paths from env and flags land here
	tests := []struct {
		name string
		file string // config file content; no file when empty
		env  []string
		args []string
		want func(c *Config, dir string) // changes the defaults into the expected Config
	}{
		{
			name: "defaults",
			env:  []string{"PATH=/bin", "HOME_DIR=x", "SYN4PSE_LOG_LEVEL="},
			want: func(c *Config, dir string) {},
		},
		{
			name: "file overrides defaults",
			file: `data_dir = "state"
[server]
host = "0.0.0.0"
http_port = 9000
shutdown_timeout = "5s"
[log]
level = "DEBUG"
format = "json"
`,
			want: func(c *Config, dir string) {
				c.DataDir = filepath.Join(dir, "state")
				c.Server.Host, c.Server.HTTPPort, c.Server.ShutdownTimeout = "0.0.0.0", 9000, 5*time.Second
				c.Log = Log{Level: "debug", Format: "json"}
			},
		},
		{
			name: "env overrides file",
			file: "[server]\nhttp_port = 9000\ngrpc_port = 9001\n[models.tiny]\npath = \"a.gguf\"\n",
			env: []string{
				"SYN4PSE_SERVER_HTTP_PORT=9100",
				"SYN4PSE_DATA_DIR=state",
				"SYN4PSE_SERVER_SHUTDOWN_TIMEOUT=1m",
				"SYN4PSE_MODELS_TINY_PATH=b.gguf",
				"SYN4PSE_MODELS_TINY_PARALLEL=4",
				"SYN4PSE_MODELS_TINY_ENABLED=false",
			},
			want: func(c *Config, dir string) {
				c.DataDir = filepath.Join(cwd, "state")
				c.Server.HTTPPort, c.Server.GRPCPort, c.Server.ShutdownTimeout = 9100, 9001, time.Minute
				m := llm("tiny", filepath.Join(cwd, "b.gguf"), filepath.Join(dir, "syn4pse.toml")+" [models.tiny]")
				m.Parallel, m.Enabled = 4, false
				c.Models = []Model{m}
			},
		},
		{
			name: "flags override env",
			file: "[server]\nhttp_port = 9000\ngrpc_port = 9001\n",
			env:  []string{"SYN4PSE_SERVER_HTTP_PORT=9100", "SYN4PSE_LOG_LEVEL=warn", "SYN4PSE_SERVER_HOST=10.0.0.1"},
			args: []string{"--http-port=9200", "--log-level", "error", "--data-dir", "/srv/syn4pse", "--verbose"},
			want: func(c *Config, dir string) {
				c.DataDir = "/srv/syn4pse"
				c.Server.Host, c.Server.HTTPPort, c.Server.GRPCPort = "10.0.0.1", 9200, 9001
				c.Log.Level = "error"
			},
		},
		{
			name: "per-peer limits and bans",
			file: "[p2p]\npeer_rate = 2.5\npeer_max_transfers = 0\n[router]\nban_after = 3\nban_duration = \"30s\"\n",
			env:  []string{"SYN4PSE_P2P_PEER_MAX_REQUESTS=8", "SYN4PSE_ROUTER_BAN_DURATION=1m"},
			want: func(c *Config, dir string) {
				c.P2P.PeerMaxRequests, c.P2P.PeerRate, c.P2P.PeerMaxTransfers = 8, 2.5, 0
				c.Router.BanAfter, c.Router.BanDuration = 3, time.Minute
			},
		},
		{
			name: "IPv6 host",
			args: []string{"--host", "[::1]", "--http-port", "0", "--grpc-port", "0"},
			want: func(c *Config, dir string) {
				c.Server.Host, c.Server.HTTPPort, c.Server.GRPCPort = "::1", 0, 0
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Env: tt.env, Flags: parseFlags(t, tt.args...)}
			dir := ""
			if tt.file != "" {
				opts.Path = writeConfig(t, tt.file)
				dir = filepath.Dir(opts.Path)
			}
			got, err := Load(opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := defaultConfig(t)
			if opts.Path != "" {
				want.File = opts.Path
			}
			tt.want(&want, dir)
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Load:\n got %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestLoadSeedBlock(t *testing.T) {
	path := writeConfig(t, `[backends.llm.llama_cpp]
enabled = true
engine = "llama_cpp"
model = "models/x.gguf"
`)
	got, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	// The file does not exist: that is the model manager's news, not a config error.
	want := []Model{llm("x", filepath.Join(filepath.Dir(path), "models", "x.gguf"), path+" [backends.llm.llama_cpp]")}
	if !reflect.DeepEqual(got.Models, want) {
		t.Errorf("Models:\n got %+v\nwant %+v", got.Models, want)
	}
}

func TestLoadSeveralModels(t *testing.T) {
	path := writeConfig(t, `
[models.tiny]
path = "/models/tiny.gguf"
context_length = 4096
threads = 8
batch_size = 256
gpu_layers = 0
parallel = 4
flash_attention = true

[models."qwen2.5-0.5b"]
path = "~/models/qwen.gguf"

[models.minilm]
modality = "embedding"
engine = "llama_cpp"
enabled = false

[backends.llm.llama_cpp]
model = "big.GGUF"
name = "big-one"
flash_attention = "off"

[backends.embedding.bert]
engine = "llama_cpp"
model = "bge.gguf"
`)
	dir := filepath.Dir(path)
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(LoadOptions{Path: path, Env: []string{"SYN4PSE_MODELS_QWEN2_5_0_5B_THREADS=2"}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	bge := llm("bge", filepath.Join(dir, "bge.gguf"), path+" [backends.embedding.bert]")
	bge.Modality = "embeddings" // [backends.embedding] is read as embeddings
	big := llm("big-one", filepath.Join(dir, "big.GGUF"), path+" [backends.llm.llama_cpp]")
	big.FlashAttention = "off"
	minilm := llm("minilm", "", path+" [models.minilm]")
	minilm.Modality, minilm.Enabled = "embeddings", false
	qwen := llm("qwen2.5-0.5b", filepath.Join(home, "models", "qwen.gguf"), path+` [models."qwen2.5-0.5b"]`)
	qwen.Threads = 2
	tiny := llm("tiny", "/models/tiny.gguf", path+" [models.tiny]")
	tiny.ContextLength, tiny.Threads, tiny.BatchSize, tiny.GPULayers, tiny.Parallel, tiny.FlashAttention = 4096, 8, 256, 0, 4, "on"

	want := []Model{bge, big, minilm, qwen, tiny}
	if len(got.Models) != len(want) {
		t.Fatalf("got %d models, want %d: %+v", len(got.Models), len(want), got.Models)
	}
	for i := range want {
		if !reflect.DeepEqual(got.Models[i], want[i]) {
			t.Errorf("Models[%d]:\n got %+v\nwant %+v", i, got.Models[i], want[i])
		}
	}
}

func TestLoadFindsFile(t *testing.T) {
	named := writeConfig(t, "[server]\nhttp_port = 1111\n")
	other := writeConfig(t, "[server]\nhttp_port = 2222\n")
	cwd := filepath.Dir(writeConfig(t, "[server]\nhttp_port = 3333\n"))
	t.Chdir(cwd)
	tests := []struct {
		name     string
		opts     LoadOptions
		wantFile string
		wantPort int
	}{
		{"./syn4pse.toml", LoadOptions{}, filepath.Join(cwd, "syn4pse.toml"), 3333},
		{"SYN4PSE_CONFIG", LoadOptions{Env: []string{"SYN4PSE_CONFIG=" + named}}, named, 1111},
		{"--config beats SYN4PSE_CONFIG", LoadOptions{
			Env:   []string{"SYN4PSE_CONFIG=" + named},
			Flags: parseFlags(t, "--config", other),
		}, other, 2222},
		{"Path beats --config", LoadOptions{Path: named, Flags: parseFlags(t, "--config", other)}, named, 1111},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got.File != tt.wantFile || got.Server.HTTPPort != tt.wantPort {
				t.Errorf("File, HTTPPort = %q, %d; want %q, %d", got.File, got.Server.HTTPPort, tt.wantFile, tt.wantPort)
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	tests := []struct {
		server             Server
		wantHTTP, wantGRPC string
	}{
		{Server{Host: "127.0.0.1", HTTPPort: 8080, GRPCPort: 50051}, "127.0.0.1:8080", "127.0.0.1:50051"},
		{Server{Host: "::1", HTTPPort: 80, GRPCPort: 0}, "[::1]:80", "[::1]:0"},
		{Server{Host: "", HTTPPort: 8080, GRPCPort: 50051}, ":8080", ":50051"},
	}
	for _, tt := range tests {
		if got := tt.server.HTTPAddr(); got != tt.wantHTTP {
			t.Errorf("HTTPAddr() = %q, want %q", got, tt.wantHTTP)
		}
		if got := tt.server.GRPCAddr(); got != tt.wantGRPC {
			t.Errorf("GRPCAddr() = %q, want %q", got, tt.wantGRPC)
		}
	}
}

// The committed syn4pse.toml must load to the built-in defaults and document every key.
func TestCommittedFile(t *testing.T) {
	path, err := filepath.Abs(filepath.Join("..", "..", "syn4pse.toml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := defaultConfig(t)
	want.File = path
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("Load:\n got %+v\nwant %+v", *got, want)
	}

	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for key := range defaultValues() {
		parts := strings.Split(key, ".")
		if !strings.Contains(string(text), "\n"+parts[len(parts)-1]+" = ") {
			t.Errorf("syn4pse.toml does not set %s", key)
		}
		if env := environment.Name(parts); !strings.Contains(string(text), env) {
			t.Errorf("syn4pse.toml does not mention %s", env)
		}
	}
	for _, table := range []*schema.Node{modelTable(), backendTables().Children["llm"].Each} {
		for key := range table.Children {
			if !strings.Contains(string(text), key) {
				t.Errorf("syn4pse.toml does not document the model key %s", key)
			}
		}
	}
}

func TestLifecycleKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "syn4pse.toml")
	if err := os.WriteFile(path, []byte("[models]\nkeep_alive = -1\nmax_memory = \"8GiB\"\nallow_remote = [\"load\"]\nmax_queue = 0\n[models.tiny]\npath = \"t.gguf\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{Path: path, Env: []string{"SYN4PSE_MODELS_KEEP_ALIVE=10m"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lifecycle.KeepAlive != 10*time.Minute || cfg.Lifecycle.MaxMemory != 8<<30 || cfg.Lifecycle.MaxQueue != 0 || len(cfg.Models) != 1 || cfg.Models[0].Name != "tiny" {
		t.Fatalf("lifecycle %+v models %+v", cfg.Lifecycle, cfg.Models)
	}
	cfg, err = Load(LoadOptions{Path: path, Env: []string{"SYN4PSE_MODELS_MAX_QUEUE=8"}})
	if err != nil || cfg.Lifecycle.MaxQueue != 8 {
		t.Fatalf("SYN4PSE_MODELS_MAX_QUEUE=8: %+v, %v", cfg.Lifecycle, err)
	}
	for _, bad := range []string{"[models]\nkeep_alive = \"soon\"\n", "[models]\nmax_memory = \"lots\"\n", "[models]\nallow_remote = [\"format_disk\"]\n", "[models]\nmax_queue = -1\n"} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(LoadOptions{Path: path}); err == nil || !strings.Contains(err.Error(), "models.") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
	for in, want := range map[string]time.Duration{"0": 0, "-1": KeepForever, "90": 90 * time.Second, "1h": time.Hour} {
		if got, err := ParseKeepAlive(in); err != nil || got != want {
			t.Errorf("ParseKeepAlive(%q) = %v, %v", in, got, err)
		}
	}
}

// TestSeedConfigLoads loads the configuration of the seed's README as written: its modality
// keys (stt, tts) and engine names (ng_llama_cpp) are ours; models whose files are missing or
// whose engines this build lacks become unavailable later, they do not stop the node.
func TestSeedConfigLoads(t *testing.T) {
	path := writeConfig(t, `
[server]
host = "0.0.0.0"
http_port = 8080
grpc_port = 50051

[backends.llm.llama_cpp]
enabled = true
engine = "ng_llama_cpp"
model = "models/llama-3-8b.Q4_K_M.gguf"

[backends.stt.faster_whisper]
enabled = true
engine = "ng_faster_whisper"
model = "models/whisper-large-v3"

[backends.tts.kokoro]
enabled = true
engine = "ng_kokoro"
model = "models/kokoro-1.3b"

[backends.tts.piper]
enabled = true
engine = "ng_piper"
model = "models/piper-1.3b"
`)
	cfg, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatalf("the seed's configuration: %v", err)
	}
	got := map[string]string{}
	for _, m := range cfg.Models {
		got[m.Modality+" "+m.Engine] = m.Name
	}
	want := map[string]string{
		"llm llama_cpp":      "llama-3-8b.Q4_K_M",
		"stt faster_whisper": "whisper-large-v3",
		"tts kokoro":         "kokoro-1.3b",
		"tts piper":          "piper-1.3b",
	}
	if !maps.Equal(got, want) {
		t.Fatalf("models (modality engine: name) = %v, want %v", got, want)
	}
}

// The speech and vision declarations of the README and syn4pse.toml load into what the engines
// take: default engines per modality, no path where the engine needs none, mmproj and vocoder
// resolved against the config file, vision read as an LLM with a projector.
func TestSpeechAndVisionDeclarations(t *testing.T) {
	path := writeConfig(t, `
[backends.stt.pocketsphinx]
[backends.tts.flite]
voice = "kal16"
[backends.vision.llava]
model = "models/llava.gguf"
mmproj = "models/llava-mmproj.gguf"
[backends.tts.outetts]
model = "models/outetts.gguf"
vocoder = "models/wavtokenizer.gguf"
[models.spanish]
modality = "tts"
engine = "espeak_ng"
voice = "es"
[models.ears]
modality = "stt"
`)
	cfg, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	got := map[string]Model{}
	for _, m := range cfg.Models {
		got[m.Name] = m
	}
	checks := []struct {
		name, modality, engine, path, voice, projector, vocoder string
	}{
		{"pocketsphinx", "stt", "pocketsphinx", "", "", "", ""},
		{"flite", "tts", "flite", "", "kal16", "", ""},
		{"llava", "llm", "llava", filepath.Join(dir, "models/llava.gguf"), "", filepath.Join(dir, "models/llava-mmproj.gguf"), ""},
		{"outetts", "tts", "outetts", filepath.Join(dir, "models/outetts.gguf"), "", "", filepath.Join(dir, "models/wavtokenizer.gguf")},
		{"spanish", "tts", "espeak_ng", "", "es", "", ""},
		{"ears", "stt", "pocketsphinx", "", "", "", ""},
	}
	for _, c := range checks {
		m, ok := got[c.name]
		if !ok || m.Modality != c.modality || m.Engine != c.engine || m.Path != c.path || m.Voice != c.voice ||
			m.Projector != c.projector || m.Vocoder != c.vocoder {
			t.Errorf("%s: %+v, want %+v", c.name, m, c)
		}
	}
}
