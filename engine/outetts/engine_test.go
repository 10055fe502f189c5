package outetts_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/engine/outetts"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// modelPath is a plain tiny llama model: not an OuteTTS LLM.
var modelPath string

func TestMain(m *testing.M) {
	// The backends as a node configured with SYN4PSE_ENGINE_LIBRARY_PATH loads them.
	var opts llamacpp.BackendOptions
	if dir := os.Getenv("SYN4PSE_ENGINE_LIBRARY_PATH"); dir != "" {
		opts.LibraryPath = []string{dir}
	}
	if _, err := llamacpp.LoadBackends(opts); err != nil {
		fmt.Fprintln(os.Stderr, "native backends:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "syn4pse-outetts-llama-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modelPath = filepath.Join(dir, "tiny.gguf")
	if err := tinygguf.Write(modelPath, tinygguf.Options{Arch: "llama", Seed: 1}); err != nil {
		fmt.Fprintln(os.Stderr, "generate model:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ttsPair writes the tiny OuteTTS LLM and WavTokenizer decoder once per test binary. One
// thread: on a busy 2-core machine ggml's spin barrier made 2 threads 10-15 times slower.
var ttsPair = sync.OnceValues(func() (engine.LoadOptions, error) {
	dir, err := os.MkdirTemp("", "syn4pse-outetts-test-")
	if err != nil {
		return engine.LoadOptions{}, err
	}
	opts := engine.LoadOptions{Path: filepath.Join(dir, "outetts.gguf"), Vocoder: filepath.Join(dir, "wavtokenizer.gguf"), Threads: 1}
	if err := tinygguf.Write(opts.Path, tinygguf.Options{Arch: "outetts", Seed: 1}); err != nil {
		return opts, err
	}
	return opts, tinygguf.Write(opts.Vocoder, tinygguf.Options{Arch: "wavtokenizer", Seed: 1})
})

func loadOuteTTS(t testing.TB) engine.TTS {
	t.Helper()
	opts, err := ttsPair()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := outetts.New().LoadTTS(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded the OuteTTS pair in %v", time.Since(start))
	t.Cleanup(func() { m.Close() })
	return m
}

// speakAll collects the audio of one synthesis.
func speakAll(ctx context.Context, m engine.TTS, text string) ([]float32, engine.SynthesizeResult, error) {
	var samples []float32
	res, err := m.Synthesize(ctx, engine.SynthesizeRequest{Text: text}, func(c engine.AudioChunk) error {
		if c.Rate != 24000 {
			return errors.New("chunk not at 24 kHz")
		}
		samples = append(samples, c.Samples...)
		return nil
	})
	return samples, res, err
}

func TestOuteTTSSynthesize(t *testing.T) {
	m := loadOuteTTS(t)
	info := m.Info()
	if info.SampleRate != 24000 || len(info.Voices) == 0 || info.Voices[0] != "default" || info.Architecture != "outetts" {
		t.Fatalf("info %+v", info)
	}
	samples, res, err := speakAll(t.Context(), m, "Hello world, it is 2025.")
	if err != nil {
		t.Fatal(err)
	}
	// Every code is one 1280-point frame every 320 samples; random weights still say some.
	const hop = 320
	if len(samples) == 0 || len(samples)%hop != 0 {
		t.Fatalf("%d samples: want a positive multiple of %d (one hop per code)", len(samples), hop)
	}
	if want := time.Duration(len(samples)) * time.Second / 24000; res.AudioDuration != want || res.Rate != 24000 {
		t.Errorf("result %+v, want duration %v at 24000 Hz", res, want)
	}
	var energy float64
	for _, s := range samples {
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			t.Fatal("audio holds NaN or Inf")
		}
		energy += float64(s) * float64(s)
	}
	if energy == 0 {
		t.Error("the audio is silent")
	}
	st := m.Stats()
	if st.Requests != 1 || st.PromptTokens == 0 || st.GeneratedTokens < int64(len(samples)/hop) {
		t.Errorf("stats %+v for %d codes", st, len(samples)/hop)
	}
	t.Logf("%d codes, %v of audio in %v", len(samples)/hop, res.AudioDuration, res.ProcessDuration)

	again, res2, err := speakAll(t.Context(), m, "Hello world, it is 2025.")
	t.Logf("again: %v", res2.ProcessDuration)
	if err != nil || len(again) != len(samples) {
		t.Errorf("the same text again gave %d samples (err %v), want the same %d", len(again), err, len(samples))
	}
	if _, _, err := speakAll(t.Context(), m, "!!!"); err != nil {
		t.Errorf("text with no words: %v", err)
	}
	_, err = m.Synthesize(t.Context(), engine.SynthesizeRequest{Text: "hi", Voice: "nobody"}, func(engine.AudioChunk) error { return nil })
	if !errors.Is(err, engine.ErrInvalidRequest) {
		t.Errorf("unknown voice: %v, want ErrInvalidRequest", err)
	}
}

func TestOuteTTSCancelAndClose(t *testing.T) {
	m := loadOuteTTS(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := speakAll(ctx, m, "hello"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	if _, _, err := speakAll(ctx, m, "the overall package from just two people is pretty remarkable"); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled during: %v", err)
	}
	// The model still works after a cancelled request.
	if samples, _, err := speakAll(t.Context(), m, "hello world"); err != nil || len(samples) == 0 {
		t.Errorf("after a cancel: %d samples, %v", len(samples), err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := speakAll(t.Context(), m, "hello"); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestOuteTTSLoadErrors(t *testing.T) {
	opts, err := ttsPair()
	if err != nil {
		t.Fatal(err)
	}
	e := outetts.New()
	tests := []struct {
		name string
		opts engine.LoadOptions
	}{
		{"no vocoder", engine.LoadOptions{Path: opts.Path}},
		{"plain llama as the LLM", engine.LoadOptions{Path: modelPath, Vocoder: opts.Vocoder}},
		{"LLM as the vocoder", engine.LoadOptions{Path: opts.Path, Vocoder: opts.Path}},
		{"missing speaker", engine.LoadOptions{Path: opts.Path, Vocoder: opts.Vocoder, Voice: "/nonexistent/voice.json"}},
	}
	for _, tt := range tests {
		if m, err := e.LoadTTS(t.Context(), tt.opts); err == nil {
			m.Close()
			t.Errorf("%s: loaded", tt.name)
		} else {
			t.Logf("%s: %v", tt.name, err)
		}
	}
}

func TestOuteTTSSpeakerProfile(t *testing.T) {
	opts, err := ttsPair()
	if err != nil {
		t.Fatal(err)
	}
	opts.Voice = filepath.Join(t.TempDir(), "anna.json")
	profile := `{"version": "0.2", "words": [{"word": "the", "duration": 0.08, "codes": [257, 40, 36]}, {"word": "end", "duration": 0.16, "codes": [1, 2, 3, 4, 5, 6]}]}`
	if err := os.WriteFile(opts.Voice, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := outetts.New().LoadTTS(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if v := m.Info().Voices; len(v) != 2 || v[0] != "anna" || v[1] != "default" {
		t.Fatalf("voices %q, want [anna default]", v)
	}
	for _, voice := range []string{"", "anna", "default"} {
		var n int
		_, err := m.Synthesize(t.Context(), engine.SynthesizeRequest{Text: "hello world", Voice: voice}, func(c engine.AudioChunk) error {
			n += len(c.Samples)
			return nil
		})
		if err != nil || n%320 != 0 {
			t.Errorf("voice %q: %d samples, %v", voice, n, err)
		}
	}
}
