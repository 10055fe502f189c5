package flite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/pocketsphinx"
	"github.com/ekisa-team/syn4pse/engine/speechtest"
)

// werBound is the word error rate each voice's speech must stay under when PocketSphinx
// transcribes it (60 words). Measured, the same on three runs: slt 0.050, kal 0.217 (8 kHz,
// resampled; most errors in its first sentence, while the recogniser adapts), kal16 0.050,
// awb 0.017, rms 0.000. The bounds allow about four more errors each, for the clustergen
// voices' random excitation and another build of either library; a wrong rate, scale or
// dropped chunk costs most of the words.
var werBound = map[string]float64{"slt": 0.12, "kal": 0.3, "kal16": 0.12, "awb": 0.1, "rms": 0.1}

func load(t testing.TB, opts engine.LoadOptions) engine.TTS {
	t.Helper()
	m, err := New().LoadTTS(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// speak synthesizes text and returns its samples and rate, checking every chunk's rate.
func speak(t testing.TB, ctx context.Context, m engine.TTS, req engine.SynthesizeRequest) ([]float32, int, engine.SynthesizeResult) {
	t.Helper()
	var samples []float32
	rate := 0
	res, err := m.Synthesize(ctx, req, func(c engine.AudioChunk) error {
		if rate != 0 && c.Rate != rate {
			t.Errorf("chunk rate %d after %d", c.Rate, rate)
		}
		rate = c.Rate
		samples = append(samples, c.Samples...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rate != rate || res.AudioDuration != time.Duration(len(samples))*time.Second/time.Duration(rate) {
		t.Errorf("result %+v for %d samples at %d Hz", res, len(samples), rate)
	}
	return samples, rate, res
}

var stt struct {
	once  sync.Once
	model engine.STT
	err   error
}

// recognizer is the PocketSphinx model that scores the speech; the test skips without it.
func recognizer(t testing.TB) engine.STT {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pocketsphinx.DefaultModelDir, "en-us", "mdef")); err != nil {
		t.Skipf("the PocketSphinx English model is missing (apt-get install pocketsphinx-en-us): %v", err)
	}
	stt.once.Do(func() { stt.model, stt.err = pocketsphinx.New().LoadSTT(context.Background(), engine.LoadOptions{}) })
	if stt.err != nil {
		t.Fatal(stt.err)
	}
	return stt.model
}

// transcribe runs samples at rate through PocketSphinx (resampled to its rate).
func transcribe(t testing.TB, samples []float32, rate int) string {
	t.Helper()
	m := recognizer(t)
	samples = speechtest.Resample(samples, rate, m.Info().SampleRate)
	res, err := m.Transcribe(context.Background(), engine.TranscribeRequest{Read: speechtest.Reader(samples, 4096)}, func(engine.TranscriptEvent) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return res.Text
}

func TestVoicesWER(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: PocketSphinx transcribes about two minutes of speech")
	}
	m := load(t, engine.LoadOptions{})
	for _, voice := range m.Info().Voices {
		t.Run(voice, func(t *testing.T) {
			var all []float32
			rate := 0
			for _, s := range speechtest.EnglishSentences {
				samples, r, _ := speak(t, t.Context(), m, engine.SynthesizeRequest{Text: s, Voice: voice})
				rate = r
				all = append(append(all, samples...), make([]float32, rate*6/10)...)
			}
			hyp := transcribe(t, all, rate)
			ref := strings.Join(speechtest.EnglishSentences, " ")
			wer, errs, words := speechtest.WER(ref, hyp)
			t.Logf("voice %s (%d Hz): WER %.3f (%d errors over %d words); bound %.2f\n  hyp: %s", voice, rate, wer, errs, words, werBound[voice], hyp)
			if wer > werBound[voice] {
				t.Errorf("WER %.3f above the bound %.2f", wer, werBound[voice])
			}
		})
	}
}

func TestInfo(t *testing.T) {
	m := load(t, engine.LoadOptions{Voice: "kal"})
	info := m.Info()
	if info.Architecture != "flite" || info.SampleRate != 8000 || len(info.Voices) != 5 || info.Voices[0] != "kal" ||
		len(info.Languages) != 1 || info.Languages[0] != "en" {
		t.Errorf("info %+v", info)
	}
	if _, rate, _ := speak(t, t.Context(), m, engine.SynthesizeRequest{Text: "Hello."}); rate != 8000 {
		t.Errorf("default voice kal spoke at %d Hz", rate)
	}
	if _, rate, _ := speak(t, t.Context(), m, engine.SynthesizeRequest{Text: "Hello.", Voice: "slt"}); rate != 16000 {
		t.Errorf("voice slt spoke at %d Hz", rate)
	}
}

func TestSpeed(t *testing.T) {
	m := load(t, engine.LoadOptions{Voice: "kal16"})
	text := speechtest.EnglishSentences[3]
	normal, _, _ := speak(t, t.Context(), m, engine.SynthesizeRequest{Text: text})
	fast, _, _ := speak(t, t.Context(), m, engine.SynthesizeRequest{Text: text, Speed: 2})
	slow, _, _ := speak(t, t.Context(), m, engine.SynthesizeRequest{Text: text, Speed: 0.5})
	if r := float64(len(fast)) / float64(len(normal)); r < 0.4 || r > 0.65 {
		t.Errorf("speed 2: %.2f times the normal length", r)
	}
	if r := float64(len(slow)) / float64(len(normal)); r < 1.7 || r > 2.3 {
		t.Errorf("speed 0.5: %.2f times the normal length", r)
	}
}

func TestStreamsInChunks(t *testing.T) {
	m := load(t, engine.LoadOptions{})
	var chunks []int
	long := strings.Join(speechtest.EnglishSentences[:4], " ")
	_, err := m.Synthesize(t.Context(), engine.SynthesizeRequest{Text: long}, func(c engine.AudioChunk) error {
		chunks = append(chunks, len(c.Samples))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 10 {
		t.Errorf("%d chunks for %q: the audio did not stream", len(chunks), long)
	}
}

func TestRequestErrors(t *testing.T) {
	m := load(t, engine.LoadOptions{})
	for _, req := range []engine.SynthesizeRequest{
		{Text: "Hello.", Voice: "nobody"},
		{Text: "   "},
		{Text: "Hello.", Speed: 10},
		{Text: "Hello.", Speed: -1},
	} {
		_, err := m.Synthesize(t.Context(), req, func(engine.AudioChunk) error { return nil })
		if !errors.Is(err, engine.ErrInvalidRequest) {
			t.Errorf("%+v: error %v, want ErrInvalidRequest", req, err)
		} else {
			t.Logf("%+v: %v", req, err)
		}
	}
	for _, opts := range []engine.LoadOptions{{Voice: "nobody"}, {Language: "fr"}} {
		if _, err := New().LoadTTS(t.Context(), opts); err == nil {
			t.Errorf("LoadTTS(%+v) succeeded", opts)
		}
	}
}

func TestCancelAndEmitError(t *testing.T) {
	m := load(t, engine.LoadOptions{})
	long := strings.Repeat(strings.Join(speechtest.EnglishSentences, " ")+" ", 3)
	ctx, cancel := context.WithCancel(t.Context())
	var cancelledAt time.Time
	lateEmits := 0
	_, err := m.Synthesize(ctx, engine.SynthesizeRequest{Text: long}, func(engine.AudioChunk) error {
		if !cancelledAt.IsZero() {
			lateEmits++
		}
		if cancelledAt.IsZero() {
			cancel()
			cancelledAt = time.Now()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	// Counted, not timed (a time bound fails on a busy machine): no audio after the cancellation.
	t.Logf("returned %v after the cancellation", time.Since(cancelledAt))
	if lateEmits > 0 {
		t.Errorf("%d chunks emitted after the cancellation", lateEmits)
	}
	stop := errors.New("client went away")
	calls := 0
	_, err = m.Synthesize(t.Context(), engine.SynthesizeRequest{Text: long}, func(engine.AudioChunk) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("error %v after %d emits, want the emit error after 1", err, calls)
	}
}

func TestConcurrentAndClose(t *testing.T) {
	m := load(t, engine.LoadOptions{Voice: "kal"})
	want, _, _ := speak(t, t.Context(), m, engine.SynthesizeRequest{Text: speechtest.EnglishSentences[0]})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			voice := []string{"kal", "slt"}[i%2]
			var n int
			_, err := m.Synthesize(t.Context(), engine.SynthesizeRequest{Text: speechtest.EnglishSentences[0], Voice: voice}, func(c engine.AudioChunk) error {
				n += len(c.Samples)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			if voice == "kal" && n != len(want) {
				t.Errorf("concurrent kal: %d samples, alone %d", n, len(want))
			}
		})
	}
	wg.Wait()
	if s := m.Stats(); s.Requests != 5 || s.Active != 0 {
		t.Errorf("stats %+v", s)
	}

	// Close waits for a running request.
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan error)
	go func() {
		first := true
		_, err := m.Synthesize(t.Context(), engine.SynthesizeRequest{Text: speechtest.EnglishSentences[1]}, func(engine.AudioChunk) error {
			if first {
				first = false
				close(started)
				<-release
			}
			return nil
		})
		done <- err
	}()
	<-started
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a request was running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("running request: %v", err)
	}
	<-closed
	if _, err := m.Synthesize(t.Context(), engine.SynthesizeRequest{Text: "Hello."}, func(engine.AudioChunk) error { return nil }); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}
