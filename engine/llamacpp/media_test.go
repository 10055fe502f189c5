package llamacpp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/audio"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// librivoxWAV is a 16 kHz recording of speech that PocketSphinx's package installs.
const librivoxWAV = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"

var projector struct {
	once sync.Once
	path string
	err  error
}

// projectorPath is a generated Qwen2-Audio projector for the tiny model of modelPath.
func projectorPath(t *testing.T) string {
	t.Helper()
	projector.once.Do(func() {
		projector.path = filepath.Join(filepath.Dir(modelPath), "mmproj-audio.gguf")
		projector.err = tinygguf.WriteAudioProjector(projector.path, 1)
	})
	if projector.err != nil {
		t.Fatal(projector.err)
	}
	return projector.path
}

// loadAudio loads the tiny model with its audio projector. Audio takes many positions (mtmd
// encodes 30-second chunks), hence the context.
func loadAudio(t *testing.T, opts engine.LoadOptions) engine.LLM {
	t.Helper()
	opts.Projector = projectorPath(t)
	if opts.ContextLength == 0 {
		opts.ContextLength = 4096
	}
	began := time.Now()
	llm := load(t, opts)
	t.Logf("model and projector loaded in %v", time.Since(began))
	return llm
}

// sineWAV is seconds of a 440 Hz sine at 16 kHz as a 16-bit mono WAV file.
func sineWAV(seconds float64) []byte {
	const rate = 16000
	n := int(seconds * rate)
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(2 * rate), uint16(2), uint16(16)} {
		binary.Write(&b, le, v)
	}
	b.WriteString("data")
	binary.Write(&b, le, uint32(2*n))
	for i := range n {
		binary.Write(&b, le, int16(8000*math.Sin(2*math.Pi*440*float64(i)/rate)))
	}
	return b.Bytes()
}

// encodeSine is seconds of a sine at 16 kHz in format (flac, mp3), through internal/audio.
func encodeSine(t *testing.T, format string, seconds float64) []byte {
	t.Helper()
	if !slices.Contains(audio.Formats(), format) {
		t.Skipf("no %s encoder on this machine", format)
	}
	path := filepath.Join(t.TempDir(), "sine."+format)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	enc, err := audio.NewEncoder(f, format, 16000)
	if err != nil {
		t.Fatal(err)
	}
	samples := make([]float32, int(seconds*16000))
	for i := range samples {
		samples[i] = float32(0.25 * math.Sin(2*math.Pi*440*float64(i)/16000))
	}
	if err := enc.Write(samples); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func audioRequest(data []byte, maxTokens int) engine.GenerateRequest {
	return engine.GenerateRequest{
		Messages: []engine.Message{{
			Role:    "user",
			Content: "What is said here? " + engine.MediaMarker,
			Media:   []engine.Media{{Data: data}},
		}},
		Sampling:  greedy(),
		MaxTokens: maxTokens,
		IgnoreEOS: true,
	}
}

func TestGenerateWithAudio(t *testing.T) {
	llm := loadAudio(t, engine.LoadOptions{Threads: 2})
	cases := []struct {
		name string
		data func(t *testing.T) []byte
	}{
		{"wav sine 2s", func(*testing.T) []byte { return sineWAV(2) }},
		{"wav speech", func(t *testing.T) []byte {
			data, err := os.ReadFile(librivoxWAV)
			if err != nil {
				t.Skip("no PocketSphinx test recording:", err)
			}
			return data
		}},
		{"flac", func(t *testing.T) []byte { return encodeSine(t, "flac", 2) }},
		{"mp3", func(t *testing.T) []byte { return encodeSine(t, "mp3", 2) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := c.data(t)
			text, _, res := generate(t, llm, audioRequest(data, 8))
			if res.CompletionTokens != 8 || res.FinishReason != engine.FinishLength {
				t.Fatalf("result %+v, want 8 tokens", res)
			}
			// The audio's embeddings fill hundreds of cells; the text around them a few dozen.
			if res.PromptTokens < 300 || res.CachedPromptTokens != 0 {
				t.Fatalf("prompt tokens %d (cached %d): the audio was not in the prompt?", res.PromptTokens, res.CachedPromptTokens)
			}
			t.Logf("%d bytes: prompt of %d tokens read in %v; generated %q", len(data), res.PromptTokens, res.PromptDuration, text)
		})
	}
}

// TestAudioLength checks that audio is encoded whole, one encoder pass per 30 seconds begun
// (mtmd alone drops a last partial window), and reports how long the prompt takes.
func TestAudioLength(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: encodes two minutes of audio")
	}
	llm := loadAudio(t, engine.LoadOptions{Threads: 2, ContextLength: 8192})
	var perWindow int
	for _, c := range []struct {
		seconds float64
		windows int
	}{{1, 1}, {10, 1}, {30, 1}, {45, 2}, {61, 3}} {
		_, _, res := generate(t, llm, audioRequest(sineWAV(c.seconds), 1))
		t.Logf("%2.0f s of audio: %d prompt tokens in %v", c.seconds, res.PromptTokens, res.PromptDuration)
		if c.seconds == 1 {
			perWindow = res.PromptTokens
			continue
		}
		// The text around the audio is the same every time; each window adds as many tokens.
		text := perWindow - 750
		if got := (res.PromptTokens - text) / 750; got != c.windows {
			t.Errorf("%v s of audio: %d prompt tokens, %d windows of 750; want %d", c.seconds, res.PromptTokens, got, c.windows)
		}
	}
}

func TestMediaErrors(t *testing.T) {
	text := load(t, engine.LoadOptions{})
	withAudio := loadAudio(t, engine.LoadOptions{})
	var png bytes.Buffer
	if err := pngEncode(&png); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		llm     engine.LLM
		msg     engine.Message
		want    error
		mention string
	}{
		{"audio to a text model", text, engine.Message{Role: "user", Content: engine.MediaMarker, Media: []engine.Media{{Data: sineWAV(1)}}}, engine.ErrInvalidRequest, "no hearing"},
		{"image to an audio projector", withAudio, engine.Message{Role: "user", Content: "Describe " + engine.MediaMarker, Media: []engine.Media{{Data: png.Bytes()}}}, engine.ErrInvalidRequest, "audio only"},
		{"image typed as audio", withAudio, engine.Message{Role: "user", Content: "Describe " + engine.MediaMarker, Media: []engine.Media{{Data: png.Bytes(), MIME: "audio/wav"}}}, engine.ErrInvalidRequest, "not WAV, MP3 or FLAC"},
		{"no marker", withAudio, engine.Message{Role: "user", Content: "Listen", Media: []engine.Media{{Data: sineWAV(1)}}}, engine.ErrInvalidRequest, "marker"},
		{"two markers for one item", withAudio, engine.Message{Role: "user", Content: engine.MediaMarker + engine.MediaMarker, Media: []engine.Media{{Data: sineWAV(1)}}}, engine.ErrInvalidRequest, "marker"},
		{"garbage audio", withAudio, engine.Message{Role: "user", Content: engine.MediaMarker, Media: []engine.Media{{Data: []byte("RIFF\x00\x00\x00\x00WAVEjunk"), MIME: "audio/wav"}}}, engine.ErrInvalidRequest, "media[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := engine.GenerateRequest{Messages: []engine.Message{c.msg}, Sampling: greedy(), MaxTokens: 2}
			_, err := c.llm.Generate(t.Context(), req, func(string) error { return nil })
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("err = %v, want %v mentioning %q", err, c.want, c.mention)
			}
		})
	}
}

func pngEncode(b *bytes.Buffer) error {
	return png.Encode(b, image.NewGray(image.Rect(0, 0, 8, 8)))
}

// TestAudioAndTextConcurrently runs a request with audio beside a text-only one on two slots:
// the audio prompt's step comes between the text request's steps, and both finish.
func TestAudioAndTextConcurrently(t *testing.T) {
	llm := loadAudio(t, engine.LoadOptions{Threads: 2, Parallel: 2})
	var wg sync.WaitGroup
	results := make([]engine.GenerateResult, 2)
	errs := make([]error, 2)
	reqs := []engine.GenerateRequest{
		{Prompt: "Once upon a time", Sampling: greedy(), MaxTokens: 48, IgnoreEOS: true},
		audioRequest(sineWAV(1), 16),
	}
	for i, req := range reqs {
		wg.Go(func() {
			results[i], errs[i] = llm.Generate(t.Context(), req, func(string) error { return nil })
		})
	}
	wg.Wait()
	for i := range reqs {
		if errs[i] != nil || results[i].CompletionTokens != reqs[i].MaxTokens {
			t.Fatalf("request %d: %v %+v", i, errs[i], results[i])
		}
	}
	// The audio prompt's cache is not reused: the same request reads it all again.
	_, _, res := generate(t, llm, reqs[1])
	if res.CachedPromptTokens != 0 {
		t.Fatalf("second audio request reused %d cached tokens", res.CachedPromptTokens)
	}
	// A text request after it gets a correct prefix from its own earlier run.
	_, _, res = generate(t, llm, reqs[0])
	if res.CompletionTokens != 48 {
		t.Fatalf("text request after audio: %+v", res)
	}
}

func TestAudioCancel(t *testing.T) {
	llm := loadAudio(t, engine.LoadOptions{Threads: 2, ContextLength: 4096})
	// Cancelled while its prompt is read (the request's step of its own: a minute of audio, three
	// encoder passes, each followed by decodes that the cancel aborts), then while generating.
	for _, after := range []int{0, 3} {
		ctx, cancel := context.WithCancel(t.Context())
		n := 0
		req := audioRequest(sineWAV(1), 0)
		if after == 0 {
			req = audioRequest(sineWAV(61), 0)
			time.AfterFunc(300*time.Millisecond, cancel)
		}
		began := time.Now()
		_, err := llm.Generate(ctx, req, func(string) error {
			if n++; n == after {
				cancel()
			}
			return nil
		})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel after %d tokens: err = %v, want context.Canceled", after, err)
		}
		t.Logf("cancel after %d tokens: Generate returned after %v", after, time.Since(began))
	}
	// The slot is free again.
	qctx, qcancel := context.WithTimeout(t.Context(), time.Minute)
	defer qcancel()
	res, err := llm.Generate(qctx, audioRequest(sineWAV(1), 3), func(string) error { return nil })
	if err != nil || res.CompletionTokens != 3 {
		t.Fatalf("request after cancel: %v %+v", err, res)
	}
}
