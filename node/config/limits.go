package config

import (
	"fmt"
	"time"

	"github.com/knadh/koanf/v2"

	"github.com/ekisa-team/syn4pse/node/config/schema"
)

// Limits are the [server] keys that bound the API servers (HTTP, Ollama's, gRPC on TCP and over
// libp2p) and each request. A zero field means its default (DefaultLimits), so a Config built
// in code gets the same limits as an empty config file.
type Limits struct {
	// ReadHeaderTimeout is server.read_header_timeout: how long an HTTP client may take to send
	// a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is server.read_timeout: how long an HTTP client may take to send a whole
	// request, body included (audio uploads are large); a response may then take as long as it
	// needs.
	ReadTimeout time.Duration
	// IdleTimeout is server.idle_timeout: how long an idle keep-alive HTTP connection stays open.
	IdleTimeout time.Duration
	// WriteTimeout is server.write_timeout: how long one write to an HTTP client may block. The
	// deadline moves with every write, so a stream lives as long as it produces and its client
	// reads, and a client that stops reading is cut after this long.
	WriteTimeout time.Duration
	// MaxRequestBody is server.max_request_body in bytes: the largest JSON request body (audio
	// uploads are bounded by server.max_audio instead).
	MaxRequestBody int64
	// MaxTokens is server.max_tokens: the most tokens one generation may produce; a request
	// asking for more, or for no limit, gets this many at most.
	MaxTokens int
	// MaxMessages is server.max_messages: the most messages one chat request may carry.
	MaxMessages int
	// MaxPromptBytes is server.max_prompt_bytes: the most bytes of text (message contents or
	// the prompt; images and audio excluded) one generation request may carry.
	MaxPromptBytes int64
	// GRPCMaxMessage is server.grpc_max_message in bytes: the largest gRPC message received or
	// sent.
	GRPCMaxMessage int64
	// GRPCMaxStreams is server.grpc_max_streams: concurrent gRPC calls per connection.
	GRPCMaxStreams int
	// GRPCKeepaliveMin is server.grpc_keepalive_min: the shortest interval between a gRPC
	// client's keepalive pings; a client pinging more often is disconnected (GOAWAY
	// ENHANCE_YOUR_CALM).
	GRPCKeepaliveMin time.Duration
}

// DefaultLimits are the built-in values of the limit keys.
var DefaultLimits = Limits{
	ReadHeaderTimeout: 10 * time.Second,
	ReadTimeout:       5 * time.Minute,
	IdleTimeout:       2 * time.Minute,
	WriteTimeout:      time.Minute,
	MaxRequestBody:    32 << 20,
	MaxTokens:         32768,
	MaxMessages:       1024,
	MaxPromptBytes:    8 << 20,
	GRPCMaxMessage:    64 << 20,
	GRPCMaxStreams:    256,
	GRPCKeepaliveMin:  10 * time.Second,
}

// WithDefaults is l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	orDefault(&l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	orDefault(&l.ReadTimeout, d.ReadTimeout)
	orDefault(&l.IdleTimeout, d.IdleTimeout)
	orDefault(&l.WriteTimeout, d.WriteTimeout)
	orDefault(&l.MaxRequestBody, d.MaxRequestBody)
	orDefault(&l.MaxTokens, d.MaxTokens)
	orDefault(&l.MaxMessages, d.MaxMessages)
	orDefault(&l.MaxPromptBytes, d.MaxPromptBytes)
	orDefault(&l.GRPCMaxMessage, d.GRPCMaxMessage)
	orDefault(&l.GRPCMaxStreams, d.GRPCMaxStreams)
	orDefault(&l.GRPCKeepaliveMin, d.GRPCKeepaliveMin)
	return l
}

func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// decodeLimits reads the limit keys of [server].
func decodeLimits(k *koanf.Koanf) Limits {
	size := func(key string) int64 {
		n, _ := schema.ParseSize(k.String(key))
		return n
	}
	return Limits{
		ReadHeaderTimeout: k.Duration("server.read_header_timeout"),
		ReadTimeout:       k.Duration("server.read_timeout"),
		IdleTimeout:       k.Duration("server.idle_timeout"),
		WriteTimeout:      k.Duration("server.write_timeout"),
		MaxRequestBody:    size("server.max_request_body"),
		MaxTokens:         k.Int("server.max_tokens"),
		MaxMessages:       k.Int("server.max_messages"),
		MaxPromptBytes:    size("server.max_prompt_bytes"),
		GRPCMaxMessage:    size("server.grpc_max_message"),
		GRPCMaxStreams:    k.Int("server.grpc_max_streams"),
		GRPCKeepaliveMin:  k.Duration("server.grpc_keepalive_min"),
	}
}

// limitDefaults are the built-in values of the limit keys, as defaultValues holds them.
func limitDefaults() map[string]any {
	d := DefaultLimits
	return map[string]any{
		"server.read_header_timeout": d.ReadHeaderTimeout,
		"server.read_timeout":        d.ReadTimeout,
		"server.idle_timeout":        d.IdleTimeout,
		"server.write_timeout":       d.WriteTimeout,
		"server.max_request_body":    d.MaxRequestBody,
		"server.max_tokens":          d.MaxTokens,
		"server.max_messages":        d.MaxMessages,
		"server.max_prompt_bytes":    d.MaxPromptBytes,
		"server.grpc_max_message":    d.GRPCMaxMessage,
		"server.grpc_max_streams":    d.GRPCMaxStreams,
		"server.grpc_keepalive_min":  d.GRPCKeepaliveMin,
	}
}

// FormatSize writes a byte size the way the config takes it: "32MiB" where n is a whole number
// of KiB, MiB or GiB, else "1500B".
func FormatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", n)
}
