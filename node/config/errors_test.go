package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	tests := []struct {
		name string
		file string // config file content; no file when empty
		path string // LoadOptions.Path when there is no file
		env  []string
		args []string
		want []string // substrings of the error; "FILE" stands for the file's path
	}{
		{
			name: "unknown key",
			file: "[server]\nhtp_port = 1\n",
			want: []string{`FILE: unknown key "server.htp_port" (did you mean "server.http_port"?)`},
		},
		{
			name: "negative peer rate",
			file: "[p2p]\npeer_rate = -1\n",
			want: []string{`p2p.peer_rate`, `want a number >= 0 such as 10 or 2.5, got -1`},
		},
		{
			name: "peer rate not a number",
			env:  []string{"SYN4PSE_P2P_PEER_RATE=fast"},
			want: []string{`SYN4PSE_P2P_PEER_RATE`, `want a number >= 0`},
		},
		{
			name: "unknown table",
			file: "[sever]\nhost = \"x\"\n",
			want: []string{`FILE: unknown key "sever" (did you mean "server"?)`},
		},
		{
			name: "unknown key far from any",
			file: "colour = \"red\"\n",
			want: []string{`FILE: unknown key "colour"`},
		},
		{
			name: "model key of the other shape",
			file: "[models.tiny]\nmodel = \"a.gguf\"\n",
			want: []string{`FILE: unknown key "models.tiny.model" (did you mean "models.tiny.path"?)`},
		},
		{
			name: "not an integer",
			file: "[server]\nhttp_port = \"abc\"\n",
			want: []string{`FILE: server.http_port: want an integer 0-65535, got "abc"`},
		},
		{
			name: "port out of range",
			file: "[server]\ngrpc_port = 70000\n",
			want: []string{`FILE: server.grpc_port: want an integer 0-65535, got 70000`},
		},
		{
			name: "a table where a value goes",
			file: "server = 5\n",
			want: []string{`FILE: server: want a table, got 5`},
		},
		{
			name: "bad log level",
			file: "[log]\nlevel = \"loud\"\n",
			want: []string{`FILE: log.level: want one of debug, info, warn, error, got "loud"`},
		},
		{
			name: "bad duration",
			file: "[server]\nshutdown_timeout = 30\n",
			want: []string{`FILE: server.shutdown_timeout: want a duration such as "30s"`},
		},
		{
			name: "host with a port",
			file: "[server]\nhost = \"localhost:8080\"\n",
			want: []string{`FILE: server.host: want a host name or IP address without a port`},
		},
		{
			name: "same port twice",
			file: "[server]\nhttp_port = 7000\ngrpc_port = 7000\n",
			want: []string{"server.http_port and server.grpc_port are both 7000"},
		},
		{
			name: "unknown modality",
			file: "[models.tiny]\nmodality = \"audio\"\npath = \"a.gguf\"\n",
			want: []string{`FILE: models.tiny.modality: want one of llm, embeddings, rerank, stt, tts, embedding, speech_to_text, text_to_speech, vision, got "audio"`},
		},
		{
			name: "unknown backend modality",
			file: "[backends.audio.clip]\nmodel = \"a.gguf\"\n",
			want: []string{`FILE: backends.audio: unknown modality "audio"`},
		},
		{
			name: "bad engine option",
			file: "[backends.llm.llama_cpp]\nmodel = \"a.gguf\"\nparallel = -1\nflash_attention = \"maybe\"\n",
			want: []string{
				`FILE: backends.llm.llama_cpp.parallel: want an integer 0-1024, got -1`,
				`FILE: backends.llm.llama_cpp.flash_attention: want one of auto, on, off, got "maybe"`,
			},
		},
		{
			name: "duplicate model names",
			file: "[models.x]\npath = \"x.gguf\"\n[backends.llm.llama_cpp]\nmodel = \"models/x.gguf\"\n",
			want: []string{`duplicate model name "x": FILE [models.x] and FILE [backends.llm.llama_cpp]`},
		},
		{
			name: "model without a path",
			file: "[models.tiny]\nthreads = 2\n",
			want: []string{`FILE: models.tiny.path: missing`},
		},
		{
			name: "backend without a model",
			file: "[backends.llm.llama_cpp]\nenabled = true\n",
			want: []string{`FILE: backends.llm.llama_cpp.model: missing`},
		},
		{
			name: "invalid model name",
			file: "[models.\"my model\"]\npath = \"a.gguf\"\n",
			want: []string{`FILE: models."my model": "my model" is not a valid model name`},
		},
		{
			name: "file name that is no model name",
			file: "[backends.llm.llama_cpp]\nmodel = \"my model.gguf\"\n",
			want: []string{`FILE: backends.llm.llama_cpp: the model name defaults to "my model", which is not a valid name: set name`},
		},
		{
			name: "syntax error",
			file: "[server]\nhttp_port = = 1\n",
			want: []string{"FILE:2:"},
		},
		{
			name: "several problems at once",
			file: "[server]\nhttp_port = -1\n[log]\nformat = \"xml\"\n",
			want: []string{"server.http_port: want", "log.format: want one of text, json"},
		},
		{
			name: "missing file passed explicitly",
			path: "nowhere/syn4pse.toml",
			want: []string{"config file nowhere/syn4pse.toml does not exist"},
		},
		{
			name: "missing file from SYN4PSE_CONFIG",
			env:  []string{"SYN4PSE_CONFIG=/nowhere/syn4pse.toml"},
			want: []string{"config file /nowhere/syn4pse.toml does not exist"},
		},
		{
			name: "unknown environment variable",
			env:  []string{"SYN4PSE_SERVER_HTTPPORT=1"},
			want: []string{"unknown environment variable SYN4PSE_SERVER_HTTPPORT (did you mean SYN4PSE_SERVER_HTTP_PORT?)"},
		},
		{
			name: "old build variable",
			env:  []string{"SYN4PSE_CGO_OPT=-O3 -march=native"},
			want: []string{"unknown environment variable SYN4PSE_CGO_OPT (a build variable of older Taskfiles, not a node setting: unset it; builds take MARCH=native"},
		},
		{
			name: "environment variable of an undeclared model",
			file: "[models.tiny]\npath = \"a.gguf\"\n",
			env:  []string{"SYN4PSE_MODELS_TINY_PATH=b.gguf", "SYN4PSE_MODELS_HUGE_PATH=c.gguf", "SYN4PSE_MODELS_TINI_PATH=d"},
			want: []string{
				"unknown environment variable SYN4PSE_MODELS_HUGE_PATH (models are declared in the config file",
				"unknown environment variable SYN4PSE_MODELS_TINI_PATH (did you mean SYN4PSE_MODELS_TINY_PATH?)",
			},
		},
		{
			name: "bad environment value",
			env:  []string{"SYN4PSE_SERVER_HTTP_PORT=abc", "SYN4PSE_MODELS_X=1"},
			want: []string{
				`SYN4PSE_SERVER_HTTP_PORT: want an integer 0-65535, got "abc"`,
				"unknown environment variable SYN4PSE_MODELS_X",
			},
		},
		{
			name: "ambiguous environment variable",
			file: "[models.a-b]\npath = \"1.gguf\"\n[models.a_b]\npath = \"2.gguf\"\n",
			env:  []string{"SYN4PSE_MODELS_A_B_PATH=3.gguf"},
			want: []string{"SYN4PSE_MODELS_A_B_PATH is ambiguous: it names models.a-b.path and models.a_b.path"},
		},
		{
			name: "flag out of range",
			args: []string{"--http-port", "70000"},
			want: []string{"--http-port: want an integer 0-65535, got 70000"},
		},
		{
			name: "bad flag value",
			args: []string{"--log-level", "verbose"},
			want: []string{`--log-level: want one of debug, info, warn, error, got "verbose"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Path: tt.path, Env: tt.env, Flags: parseFlags(t, tt.args...)}
			if tt.file != "" {
				opts.Path = writeConfig(t, tt.file)
			}
			cfg, err := Load(opts)
			if err == nil {
				t.Fatalf("Load = %+v, want an error", cfg)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			for _, want := range tt.want {
				want = strings.ReplaceAll(want, "FILE", opts.Path)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
		})
	}
}

func TestFileNamedRelativeToWorkingDir(t *testing.T) {
	path := writeConfig(t, "[server]\nhtp_port = 1\n")
	t.Chdir(filepath.Dir(path))
	_, err := Load(LoadOptions{})
	want := `syn4pse.toml: unknown key "server.htp_port" (did you mean "server.http_port"?)`
	if err == nil || err.Error() != want {
		t.Errorf("Load error = %v, want %q", err, want)
	}
}
