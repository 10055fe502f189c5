package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPublicHidesKeys: the configuration in effect names every table and the declared models,
// shows how many API keys there are, and never their values.
func TestPublicHidesKeys(t *testing.T) {
	keys := []string{"sk-public-test-one-4f1c9a", "sk-public-test-two-8d2e7b"}
	cfg := &Config{Server: Server{HTTPPort: 8081, APIKeys: keys}, Models: []Model{{Name: "tiny", Modality: "llm"}}}
	b, err := cfg.Public()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(string(b), k) {
			t.Fatalf("the public config shows API key %q:\n%s", k, b)
		}
	}
	var v struct {
		Server struct {
			HTTPPort int      `json:"http_port"`
			APIKeys  []string `json:"api_keys"`
			Limits   map[string]any
		}
		Models                   map[string]any   `json:"models"`
		DeclaredModels           []map[string]any `json:"declared_models"`
		Router, Engine, Log, P2P map[string]any
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Server.HTTPPort != 8081 || len(v.Server.APIKeys) != 2 || v.Server.APIKeys[0] != Hidden {
		t.Errorf("server: %+v", v.Server)
	}
	if len(v.DeclaredModels) != 1 || v.DeclaredModels[0]["name"] != "tiny" || v.Models["keep_alive"] == nil {
		t.Errorf("models: %v, declared %v", v.Models, v.DeclaredModels)
	}
	if v.Router == nil || v.Engine == nil || v.Log == nil || v.P2P == nil || v.Server.Limits == nil {
		t.Errorf("a table is missing:\n%s", b)
	}
	if cfg.Server.APIKeys[0] != keys[0] {
		t.Error("Public changed the configuration's keys")
	}
}

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{"HTTPPort": "http_port", "APIKeys": "api_keys", "ReadHeaderTimeout": "read_header_timeout",
		"SHA256": "sha256", "MDNS": "mdns", "TLSCert": "tls_cert", "GPULayers": "gpu_layers", "P2P": "p2p", "CPUVariant": "cpu_variant",
		"FetchImageURLs": "fetch_image_urls", "PeerTTL": "peer_ttl", "MaxTokens": "max_tokens"} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}
