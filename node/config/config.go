// Package config loads a node's configuration: built-in defaults, then the TOML file, then
// SYN4PSE_* environment variables, then command-line flags, each layer overriding the one
// before. Every value is checked where it is read, so an error names the file, variable or
// flag it came from, and the result is validated once, in Load, before anything starts.
//
// keys.go defines SYN4PSE's keys and their defaults; reading each layer and checking it against
// them is node/config/schema's work, which knows no key of its own.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/config/schema"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// ErrInvalid is wrapped by every error that Load reports about the configuration itself, so a
// caller can exit with a usage code rather than a runtime failure.
var ErrInvalid = schema.ErrInvalid

// Config is the node's whole configuration, validated.
type Config struct {
	// DataDir is data_dir: where the node keeps its identity, model cache and peers, absolute.
	DataDir string
	Server  Server
	Log     Log
	P2P     P2P
	Router  Router
	Engine  Engine
	// Models holds every model declared, enabled or not, sorted by Name.
	Models []Model
	// Lifecycle is the [models] table's own keys: when models load and unload.
	Lifecycle Lifecycle
	// File is the absolute path of the config file read, "" when none.
	File string
}

// Server is the [server] table: where the node listens.
type Server struct {
	// Host is server.host, the address both servers listen on; "" means every interface.
	Host string
	// HTTPPort is server.http_port; 0 picks a free port.
	HTTPPort int
	// Ollama serves Ollama's API (server.ollama_port is not -1), on OllamaPort; 0 picks a free
	// port.
	Ollama     bool
	OllamaPort int
	// GRPCPort is server.grpc_port; 0 picks a free port.
	GRPCPort int
	// ShutdownTimeout is server.shutdown_timeout: how long a stopping node waits for
	// in-flight requests before cutting them.
	ShutdownTimeout time.Duration
	// MaxAudio is server.max_audio: the longest audio a transcription may send; longer audio
	// is refused (HTTP 413, gRPC OUT_OF_RANGE).
	MaxAudio time.Duration
	// FetchImageURLs is server.fetch_image_urls: whether chat image parts may name http(s) URLs
	// that the node fetches (bounded in size and time); off, only data: URLs are taken.
	FetchImageURLs bool
	// APIKeys is server.api_keys, nil when none: when set, every request but health checks must
	// send one as "Authorization: Bearer KEY" (mesh peers excepted). Never log them.
	APIKeys []string
	// AllowUnauthenticated is server.allow_unauthenticated: serve other machines without keys.
	AllowUnauthenticated bool
	// TLSCert and TLSKey are server.tls_cert and server.tls_key: PEM files, absolute; both set,
	// the HTTP, Ollama and gRPC ports serve TLS. Both "" serve plain TCP.
	TLSCert, TLSKey string
	// Limits bound what one client and one request may take of the API servers.
	Limits Limits
}

// P2P is the [p2p] table: how the node joins its mesh. The mesh itself (the swarm key) is in
// the data dir, written by `syn4pse mesh init` or `syn4pse mesh join`; without it the node runs
// standalone.
type P2P struct {
	// Listen is p2p.listen: libp2p multiaddrs (TCP: a private mesh cannot use QUIC).
	Listen []string
	// Bootstrap is p2p.bootstrap: peers to dial at start, multiaddrs with /p2p/<peer ID>.
	Bootstrap []string
	// Allow is p2p.allow: peer IDs admitted; empty admits every holder of the swarm key.
	Allow []string
	// MDNS is p2p.mdns: find peers on the LAN by multicast DNS.
	MDNS bool
	// NAT is p2p.nat: port mapping and hole punching.
	NAT bool
	// Relay is p2p.relay: use and offer circuit relays.
	Relay bool
	// Name is p2p.name: the node's name shown to peers; "" is the host name.
	Name string
	// AnnounceInterval is p2p.announce_interval: how often capabilities are republished.
	AnnounceInterval time.Duration
	// PeerTTL is p2p.peer_ttl: a peer not heard from for this long leaves the peer table.
	PeerTTL time.Duration
	// PeerMaxRequests is p2p.peer_max_requests: how many calls one peer may have running here
	// at once; past it a call is refused with RESOURCE_EXHAUSTED. 0 means no limit.
	PeerMaxRequests int
	// PeerRate is p2p.peer_rate: calls per second one peer may start here (a token bucket
	// whose burst is the rate); past it RESOURCE_EXHAUSTED with a retry hint. 0 means no limit.
	PeerRate float64
	// PeerMaxTransfers is p2p.peer_max_transfers: how many model blob transfers one peer may
	// have running from this node at once; past it the request is refused as busy. 0 means no
	// limit.
	PeerMaxTransfers int
}

// Lifecycle holds the keys of the [models] table itself (model tables sit beside them, so no
// model may be called keep_alive, max_memory, allow_remote, max_queue or load_probe).
type Lifecycle struct {
	// KeepAlive is models.keep_alive: how long an idle model stays loaded; 0 unloads at once,
	// KeepForever never. Requests may override it.
	KeepAlive time.Duration
	// MaxMemory is models.max_memory in bytes: loaded models together stay below it, the least
	// recently used idle one unloading to make room. 0 means 80% of the machine's memory.
	MaxMemory int64
	// AllowRemote is models.allow_remote: what peers may ask this node to do (load, unload,
	// pull, delete).
	AllowRemote []string
	// MaxQueue is models.max_queue: how many requests may wait for each model beyond its
	// parallel slots; a request past it is refused at once (HTTP 503, RESOURCE_EXHAUSTED).
	// 0 means no limit.
	MaxQueue int
	// LoadProbe is models.load_probe: before a model file is first loaded, load it in a child
	// process, so that a file that crashes llama.cpp fails alone instead of taking the node
	// down. A file that passed is remembered (by path, size and modification time).
	LoadProbe bool
	// ProbeCommand is the command that runs a load probe (the syn4pse binary and its
	// `probe-model` subcommand), set by `syn4pse serve`, never from the config file: a program
	// embedding the node without that subcommand leaves it empty, which disables probes.
	ProbeCommand []string
}

// Router is the [router] table.
type Router struct {
	// MaxHops is router.max_hops: how many times a request may be forwarded between nodes.
	MaxHops int
	// BanAfter is router.ban_after: after this many consecutive failures of a peer (forwarded
	// requests or blob transfers) the peer is banned for BanDuration. 0 never bans.
	BanAfter int
	// BanDuration is router.ban_duration: how long a banned peer is not chosen.
	BanDuration time.Duration
}

// Engine is the [engine] table: where the native backends are and which CPU code runs.
type Engine struct {
	// LibraryPath is engine.library_path: the folder of the backend libraries (libggml-*.so),
	// absolute; "" means lib/ beside the executable, then ../lib/syn4pse.
	LibraryPath string
	// CPUVariant is engine.cpu_variant: "auto" (the best variant this CPU runs), "builtin" (the
	// generic code compiled into the binary) or a variant's name.
	CPUVariant string
}

// Log is the [log] table.
type Log struct {
	// Level is log.level: debug, info, warn or error.
	Level string
	// Format is log.format: text or json.
	Format string
}

// Model is one model declared in the config file, with its engine options.
type Model struct {
	// Name is how requests name the model.
	Name string
	// Modality is llm, embeddings, rerank, stt, tts or vision (the aliases embedding, speech_to_text
	// and text_to_speech are read as embeddings, stt and tts).
	Modality string
	// Engine names the engine in the engine registry, e.g. "llama_cpp".
	Engine string
	// Path is the model file, absolute. The file need not exist: the node lists such a model
	// as unavailable rather than refusing to start.
	Path string
	// Enabled says whether the node offers the model.
	Enabled bool
	// ContextLength is context_length; 0 uses the engine's default.
	ContextLength int
	// Threads is threads; 0 picks a count for the machine.
	Threads int
	// BatchSize is batch_size: tokens per decode batch.
	BatchSize int
	// GPULayers is gpu_layers: layers offloaded to the GPU; -1 means all that fit, 0 CPU only.
	GPULayers int
	// MainGPU is main_gpu: -1 spreads the layers over every GPU; N runs the whole model on
	// GPU N (in the order `syn4pse status` lists the devices).
	MainGPU int
	// Parallel is parallel: how many sequences the model decodes at once; 0 lets the node
	// choose one that fits memory (auto).
	Parallel int
	// FlashAttention is flash_attention: auto, on or off.
	FlashAttention string
	// Voice is voice: a text-to-speech model's default voice ("" for the engine's).
	Voice string
	// Language is language: a speech model's language tag ("" for the engine's).
	Language string
	// Projector is mmproj: the multimodal projector GGUF of an LLM that takes images or audio.
	Projector string
	// Vocoder is vocoder: the model that turns a TTS LLM's audio codes into sound (OuteTTS's
	// WavTokenizer decoder GGUF).
	Vocoder string
	// Pooling is pooling: how an embeddings model pools token vectors (mean, cls, last; ""
	// for what its GGUF says).
	Pooling string
	// Source is source: where the model is pulled from when its file is missing (an http(s)
	// URL or hf://OWNER/REPO/FILE[@REVISION]); "" for a model that is only a path.
	Source string
	// SHA256 is sha256: the file's expected digest (hex), "" when unknown.
	SHA256 string
	// Declared says where the model was declared, for messages: `syn4pse.toml [models.tiny]`.
	Declared string
}

// LoadOptions says where Load reads from.
type LoadOptions struct {
	// Path is the config file (--config). When empty, Load uses a changed --config flag in
	// Flags, else $SYN4PSE_CONFIG from Env, else ./syn4pse.toml when it exists, else no file.
	// A file named explicitly must exist.
	Path string
	// Env is the environment, os.Environ() in production. Nil means no variables, which keeps
	// tests independent of the machine's environment.
	Env []string
	// Flags holds the flags from RegisterFlags and may be nil; only flags the user set
	// override other layers.
	Flags *pflag.FlagSet
}

// HTTPAddr is the address the HTTP API listens on, host:port.
func (s Server) HTTPAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.HTTPPort)) }

// OllamaAddr is the address Ollama's API listens on, host:port, where Ollama is set.
func (s Server) OllamaAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.OllamaPort)) }

// GRPCAddr is the address the gRPC API listens on, host:port.
func (s Server) GRPCAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.GRPCPort)) }

// SlogLevel is Level as a slog.Level.
func (l Log) SlogLevel() slog.Level {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return slog.LevelInfo
	}
	return level
}

// Load reads, layers and validates the configuration. Errors about the configuration wrap
// ErrInvalid; several problems are reported together, one per line.
func Load(opts LoadOptions) (*Config, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	path := configPath(opts)
	if path != "" && !filepath.IsAbs(path) {
		path = filepath.Join(cwd, path)
	}

	k := koanf.New(".")
	if err := k.Load(confmap.Provider(defaultValues(), "."), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}

	var file *fileLayer
	var declared map[string]any // only the file declares models
	var layers []*schema.Layer
	if path != "" {
		file = &fileLayer{path: path, name: displayName(path, cwd)}
		if file.Layer, err = schema.ReadFile(keySchema, file.path, file.name); err != nil {
			return nil, err
		}
		declared = file.Values
		layers = append(layers, file.Layer)
	}
	layers = append(layers, environment.Read(keySchema, opts.Env, declared, cwd),
		schema.ReadFlags(keySchema, opts.Flags, flagKeys, cwd))
	var errs []error
	for _, layer := range layers {
		errs = append(errs, layer.Errs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, layer := range layers {
		if err := k.Load(confmap.Provider(layer.Values, ""), nil); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	return decode(k, file)
}

// fileLayer is the config file's layer.
type fileLayer struct {
	*schema.Layer
	path string // absolute
	name string // how messages name the file
}

// decode turns the merged, already checked values into a Config and runs the checks that
// span several keys.
func decode(k *koanf.Koanf, file *fileLayer) (*Config, error) {
	dataDir, err := schema.ExpandHome(k.String("data_dir"))
	if err != nil {
		return nil, schema.Invalidf("data_dir: %v; set data_dir or SYN4PSE_DATA_DIR", err)
	}
	if !filepath.IsAbs(dataDir) {
		// Only the built-in default can still be relative here; layers resolve their own.
		if dataDir, err = filepath.Abs(dataDir); err != nil {
			return nil, schema.Invalidf("data_dir: %v", err)
		}
	}
	cfg := &Config{
		DataDir: dataDir,
		Server: Server{
			Host:            k.String("server.host"),
			HTTPPort:        k.Int("server.http_port"),
			GRPCPort:        k.Int("server.grpc_port"),
			Ollama:          k.Int("server.ollama_port") >= 0,
			OllamaPort:      max(k.Int("server.ollama_port"), 0),
			ShutdownTimeout: k.Duration("server.shutdown_timeout"),
			MaxAudio:        k.Duration("server.max_audio"),
			FetchImageURLs:  k.Bool("server.fetch_image_urls"),
			TLSCert:         k.String("server.tls_cert"),
			TLSKey:          k.String("server.tls_key"),
			Limits:          decodeLimits(k),
		},
		Log: Log{Level: k.String("log.level"), Format: k.String("log.format")},
		P2P: P2P{
			Listen:           k.Strings("p2p.listen"),
			Bootstrap:        k.Strings("p2p.bootstrap"),
			Allow:            k.Strings("p2p.allow"),
			MDNS:             k.Bool("p2p.mdns"),
			NAT:              k.Bool("p2p.nat"),
			Relay:            k.Bool("p2p.relay"),
			Name:             k.String("p2p.name"),
			AnnounceInterval: k.Duration("p2p.announce_interval"),
			PeerTTL:          k.Duration("p2p.peer_ttl"),
			PeerMaxRequests:  k.Int("p2p.peer_max_requests"),
			PeerRate:         k.Float64("p2p.peer_rate"),
			PeerMaxTransfers: k.Int("p2p.peer_max_transfers"),
		},
		Router: Router{MaxHops: k.Int("router.max_hops"), BanAfter: k.Int("router.ban_after"),
			BanDuration: k.Duration("router.ban_duration")},
		Engine: Engine{LibraryPath: k.String("engine.library_path"), CPUVariant: k.String("engine.cpu_variant")},
	}
	cfg.Lifecycle.KeepAlive, _ = ParseKeepAlive(k.String("models.keep_alive"))
	cfg.Lifecycle.MaxMemory, _ = schema.ParseSize(k.String("models.max_memory"))
	cfg.Lifecycle.AllowRemote = k.Strings("models.allow_remote")
	cfg.Lifecycle.MaxQueue = k.Int("models.max_queue")
	cfg.Lifecycle.LoadProbe = k.Bool("models.load_probe")
	cfg.Server.AllowUnauthenticated = k.Bool("server.allow_unauthenticated")
	if keys := k.Strings("server.api_keys"); len(keys) > 0 {
		cfg.Server.APIKeys = keys
	}
	errs := cfg.Server.checkAccess()
	if p := cfg.Server.HTTPPort; p != 0 && p == cfg.Server.GRPCPort {
		errs = append(errs, schema.Invalidf("server.http_port and server.grpc_port are both %d; the two servers need different ports", p))
	}
	if file != nil {
		cfg.File = file.path
		models, modelErrs := decodeModels(k.Raw(), file.name)
		cfg.Models = models
		errs = append(errs, modelErrs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Decl is the model as the catalog takes it.
func (m Model) Decl() models.Decl {
	return models.Decl{Name: m.Name, Modality: m.Modality, Engine: m.Engine, Path: m.Path, Enabled: m.Enabled,
		Declared: m.Declared, Options: engine.LoadOptions{ContextLength: m.ContextLength, Threads: m.Threads,
			BatchSize: m.BatchSize, GPULayers: m.GPULayers, MainGPU: m.MainGPU, Parallel: m.Parallel,
			FlashAttention: m.FlashAttention, Voice: m.Voice, Language: m.Language,
			Projector: m.Projector, Vocoder: m.Vocoder, Pooling: m.Pooling}}
}
