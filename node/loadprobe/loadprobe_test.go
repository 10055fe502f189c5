package loadprobe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node/models"
)

// These tests run the prober with /bin/sh standing in for the syn4pse binary's probe-model
// (whose real runs cmd/syn4pse's TestLoadProbeKeepsTheNodeUp covers): a real child process
// that exits, fails or dies by a real signal, so the parent's reading of each is what is tested.

// shProber runs script as the child; its arguments ($1...) are the probe's flags. Each run
// appends a line to the returned file.
func shProber(t *testing.T, script, dataDir string) (*Prober, string) {
	t.Helper()
	runs := filepath.Join(t.TempDir(), "runs")
	command := []string{"/bin/sh", "-c", "echo run >> " + runs + "; " + script, "probe-model"}
	return New(command, nil, dataDir), runs
}

func countRuns(t *testing.T, runs string) int {
	t.Helper()
	b, err := os.ReadFile(runs)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

func tinyDecl(t *testing.T) models.Decl {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := tinygguf.Write(path, tinygguf.Options{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return models.Decl{Name: "tiny", Modality: "llm", Engine: "llama_cpp", Path: path}
}

func TestPassedProbeIsRemembered(t *testing.T) {
	d, data := tinyDecl(t), t.TempDir()
	p, runs := shProber(t, "exit 0", data)
	for range 3 {
		if err := p.Probe(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if n := countRuns(t, runs); n != 1 {
		t.Fatalf("%d probes ran, want 1", n)
	}
	// A new prober (a restarted node) reads what passed; a changed file is probed again.
	p2, runs2 := shProber(t, "exit 0", data)
	if err := p2.Probe(t.Context(), d); err != nil || countRuns(t, runs2) != 0 {
		t.Fatalf("after a restart: %v, %d probes", err, countRuns(t, runs2))
	}
	if err := tinygguf.Write(d.Path, tinygguf.Options{Seed: 2, ContextLength: 1024}); err != nil {
		t.Fatal(err)
	}
	if err := p2.Probe(t.Context(), d); err != nil || countRuns(t, runs2) != 1 {
		t.Fatalf("after the file changed: %v, %d probes", err, countRuns(t, runs2))
	}
}

func TestProbeFailures(t *testing.T) {
	tests := []struct {
		name, script, want string
	}{
		{"segfault", "kill -SEGV $$", "the engine crashed loading this file (signal SIGSEGV); the file is malformed or unsupported"},
		{"abort with an assertion", "echo 'clip.cpp:12: GGML_ASSERT(model.q_b) failed' >&2; kill -ABRT $$",
			"the engine crashed loading this file (signal SIGABRT: GGML_ASSERT(model.q_b) failed)"},
		// What the Go runtime prints, and its exit status, when C code faults in the child.
		{"signal caught by the Go runtime", "echo 'SIGSEGV: segmentation violation' >&2; echo 'PC=0x0 m=0' >&2; exit 2",
			"the engine crashed loading this file (signal SIGSEGV)"},
		{"clean failure", "echo 'some log line' >&2; echo 'error: vocoder v.gguf: architecture \"llama\", want wavtokenizer-dec' >&2; exit 1",
			`vocoder v.gguf: architecture "llama", want wavtokenizer-dec`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, data := tinyDecl(t), t.TempDir()
			p, runs := shProber(t, tt.script, data)
			err := p.Probe(t.Context(), d)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			// A failed probe is not remembered: the next load probes again.
			if p.Probe(t.Context(), d) == nil || countRuns(t, runs) != 2 {
				t.Fatalf("a failed probe was remembered (%d runs)", countRuns(t, runs))
			}
			if _, err := os.Stat(filepath.Join(data, "load-probes.json")); !os.IsNotExist(err) {
				t.Fatalf("load-probes.json written after failures: %v", err)
			}
		})
	}
}

func TestProbeSkips(t *testing.T) {
	p, runs := shProber(t, "exit 0", t.TempDir())
	d := tinyDecl(t)
	// Other engines, and models without a file, are not llama.cpp's to crash.
	for _, skip := range []models.Decl{{Name: "voice", Modality: "tts", Engine: "flite"}, {Name: "stt", Modality: "stt", Engine: "pocketsphinx", Path: d.Path}} {
		if err := p.Probe(t.Context(), skip); err != nil {
			t.Fatal(err)
		}
	}
	// A file the GGUF check refuses fails without a child.
	bad := d
	bad.Options.Projector = filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := os.WriteFile(bad.Options.Projector, []byte("GGUF\x63\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Probe(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "mmproj "+bad.Options.Projector+": malformed GGUF file: version 99") {
		t.Fatalf("malformed projector: %v", err)
	}
	if n := countRuns(t, runs); n != 0 {
		t.Fatalf("%d probes ran, want none", n)
	}
}

func TestSpecArgs(t *testing.T) {
	s := Spec{Modality: "tts", Engine: "outetts", Path: "m.gguf", Vocoder: "v.gguf"}
	got := strings.Join(s.Args(), " ")
	if got != "--modality tts --engine outetts --path m.gguf --vocoder v.gguf" {
		t.Fatalf("args %q", got)
	}
}
