package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/node/config/schema"
)

func TestLimitKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "syn4pse.toml")
	file := "[server]\nmax_request_body = \"1MiB\"\nmax_tokens = 64\nmax_messages = 3\nmax_prompt_bytes = 4096\n" +
		"grpc_max_message = \"2MB\"\ngrpc_max_streams = 4\nwrite_timeout = \"250ms\"\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{Path: path, Env: []string{"SYN4PSE_SERVER_READ_TIMEOUT=90s", "SYN4PSE_SERVER_GRPC_KEEPALIVE_MIN=1m",
		"SYN4PSE_SERVER_IDLE_TIMEOUT=5s", "SYN4PSE_SERVER_READ_HEADER_TIMEOUT=2s"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 90 * time.Second, IdleTimeout: 5 * time.Second,
		WriteTimeout: 250 * time.Millisecond, MaxRequestBody: 1 << 20, MaxTokens: 64, MaxMessages: 3, MaxPromptBytes: 4096,
		GRPCMaxMessage: 2e6, GRPCMaxStreams: 4, GRPCKeepaliveMin: time.Minute}
	if cfg.Server.Limits != want {
		t.Errorf("limits = %+v\nwant %+v", cfg.Server.Limits, want)
	}

	for _, tt := range []struct{ file, want string }{
		{"[server]\nmax_request_body = 0\n", `server.max_request_body: want a size more than 0`},
		{"[server]\nmax_prompt_bytes = \"lots\"\n", `server.max_prompt_bytes: want a size`},
		{"[server]\ngrpc_max_message = \"3GiB\"\n", `server.grpc_max_message: want a size more than 0 and at most 2147483647 bytes`},
		{"[server]\nwrite_timeout = \"0s\"\n", `server.write_timeout: want a duration more than 0`},
		{"[server]\nmax_tokens = 0\n", `server.max_tokens: want an integer >= 1, got 0`},
		{"[server]\nmax_messages = -5\n", `server.max_messages: want an integer >= 1`},
		{"[server]\ngrpc_max_streams = 0\n", `server.grpc_max_streams: want an integer >= 1`},
	} {
		if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(LoadOptions{Path: path}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tt.file, err, tt.want)
		}
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	if got := (Limits{}).WithDefaults(); got != DefaultLimits {
		t.Errorf("zero limits with defaults = %+v, want %+v", got, DefaultLimits)
	}
	got := Limits{MaxTokens: 7, WriteTimeout: time.Second}.WithDefaults()
	if got.MaxTokens != 7 || got.WriteTimeout != time.Second || got.MaxMessages != DefaultLimits.MaxMessages {
		t.Errorf("set fields must stay, zero ones take the default: %+v", got)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{32 << 20: "32MiB", 2 << 30: "2GiB", 1536: "1536B", 3 << 10: "3KiB", 0: "0B"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := schema.ParseSize(FormatSize(n)); err != nil || back != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	}
}
