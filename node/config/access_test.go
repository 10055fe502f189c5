package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestAPIKeysFromEnv(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tt := range []struct {
		env  []string
		want []string
	}{
		{nil, nil},
		{[]string{"SYN4PSE_API_KEYS=k1"}, []string{"k1"}},
		{[]string{"SYN4PSE_API_KEYS=k1, k2,"}, []string{"k1", "k2"}},
		{[]string{"SYN4PSE_SERVER_API_KEYS=k3,k4"}, []string{"k3", "k4"}},
		// The client commands' variables sit beside the node's without being unknown keys.
		{[]string{"SYN4PSE_API_KEY=k5", "SYN4PSE_TLS_CA=/ca.pem", "SYN4PSE_API_KEYS=k6"}, []string{"k6"}},
	} {
		cfg, err := Load(LoadOptions{Env: tt.env})
		if err != nil {
			t.Fatalf("%v: %v", tt.env, err)
		}
		if !slices.Equal(cfg.Server.APIKeys, tt.want) {
			t.Errorf("%v: api_keys = %q, want %q", tt.env, cfg.Server.APIKeys, tt.want)
		}
	}
	_, err := Load(LoadOptions{Env: []string{"SYN4PSE_API_KEYS=k1", "SYN4PSE_SERVER_API_KEYS=k2"}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "both set") {
		t.Fatalf("both names set: %v", err)
	}
	cfg, err := Load(LoadOptions{Env: []string{"SYN4PSE_SERVER_ALLOW_UNAUTHENTICATED=true", "SYN4PSE_SERVER_HOST=0.0.0.0"}})
	if err != nil || !cfg.Server.AllowUnauthenticated || cfg.Server.CheckAccess() != nil {
		t.Fatalf("allow_unauthenticated from the environment: %+v, %v", cfg, err)
	}
}

func TestAccessKeysInFile(t *testing.T) {
	const secret = "s3cr3t-value-987"
	path := writeConfig(t, "[server]\napi_keys = [\"k1\", \"k2\"]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n")
	cfg, err := Load(LoadOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Server.APIKeys, []string{"k1", "k2"}) || !strings.HasSuffix(cfg.Server.TLSCert, "/cert.pem") || !strings.HasSuffix(cfg.Server.TLSKey, "/key.pem") {
		t.Fatalf("server = %+v", cfg.Server)
	}
	for _, tt := range []struct{ toml, want string }{
		{"api_keys = [\"\"]", "key 1 is empty"},
		{"api_keys = [\"ok\", \"" + secret + " x\"]", "key 2 has a space"},
		{"api_keys = [\"" + secret + "\", 987]", "value is not shown"},
		{"api_keys = \"" + secret + "\"", ""},
		{"tls_cert = \"cert.pem\"", "server.tls_cert and server.tls_key go together"},
		{"tls_key = \"key.pem\"", "server.tls_cert and server.tls_key go together"},
	} {
		file := writeConfig(t, "[server]\n"+tt.toml+"\n")
		_, err := Load(LoadOptions{Path: file})
		if tt.want == "" {
			// A bare string is read as a one-key list, as the environment gives it.
			if err != nil {
				t.Errorf("%s: %v", tt.toml, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.toml, err, tt.want)
		}
		// The file's path is random and may hold the digits, so it is left out of the search.
		if msg := strings.ReplaceAll(fmt.Sprint(err), file, "FILE"); strings.Contains(msg, secret) || strings.Contains(msg, "987") {
			t.Errorf("%s: the error shows the key: %v", tt.toml, err)
		}
	}
}

func TestCheckAccess(t *testing.T) {
	for _, tt := range []struct {
		host    string
		exposed bool
	}{
		{"127.0.0.1", false}, {"127.0.0.2", false}, {"::1", false}, {"localhost", false}, {"LOCALHOST", false},
		{"0.0.0.0", true}, {"::", true}, {"", true}, {"192.168.1.20", true}, {"fe80::1", true}, {"node.lan", true},
	} {
		s := Server{Host: tt.host}
		if s.Exposed() != tt.exposed {
			t.Errorf("Exposed(%q) = %v", tt.host, !tt.exposed)
		}
		err := s.CheckAccess()
		if !tt.exposed {
			if err != nil {
				t.Errorf("%q: %v", tt.host, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%q without keys: err = %v, want a configuration error", tt.host, err)
		}
		for _, fix := range []string{"set server.api_keys", "SYN4PSE_API_KEYS=KEY", "server.allow_unauthenticated = true",
			"SYN4PSE_SERVER_ALLOW_UNAUTHENTICATED=true", "trusted LAN"} {
			if !strings.Contains(err.Error(), fix) {
				t.Errorf("%q: the refusal does not say %q: %v", tt.host, fix, err)
			}
		}
		if err := (Server{Host: tt.host, APIKeys: []string{"k"}}).CheckAccess(); err != nil {
			t.Errorf("%q with a key: %v", tt.host, err)
		}
		if err := (Server{Host: tt.host, AllowUnauthenticated: true}).CheckAccess(); err != nil {
			t.Errorf("%q allowed unauthenticated: %v", tt.host, err)
		}
	}
}
