package flite

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

const sentence = "The quick brown fox jumps over the lazy dog."

func speak(t *testing.T, v *Voice, req Request) []float32 {
	t.Helper()
	var out []float32
	if err := v.Synthesize(req, func(s []float32) bool { out = append(out, s...); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVoices(t *testing.T) {
	wantRate := map[string]int{"slt": 16000, "kal": 8000, "kal16": 16000, "awb": 16000, "rms": 16000}
	for _, name := range Voices() {
		t.Run(name, func(t *testing.T) {
			v, err := LoadVoice(name)
			if err != nil {
				t.Fatal(err)
			}
			if v.SampleRate() != wantRate[name] {
				t.Errorf("rate %d, want %d", v.SampleRate(), wantRate[name])
			}
			samples := speak(t, v, Request{Text: sentence})
			secs := float64(len(samples)) / float64(v.SampleRate())
			// Nine words at a normal pace: about 2-3 s.
			if secs < 1.5 || secs > 4.5 {
				t.Errorf("%.2f s of audio for %q", secs, sentence)
			}
			var peak float32
			for _, s := range samples {
				peak = max(peak, s, -s)
			}
			if peak < 0.05 || peak > 1 {
				t.Errorf("peak amplitude %.3f", peak)
			}
		})
	}
	if _, err := LoadVoice("nobody"); err == nil {
		t.Error("LoadVoice(nobody) succeeded")
	}
}

func TestStreamingAndStretch(t *testing.T) {
	v, err := LoadVoice("slt")
	if err != nil {
		t.Fatal(err)
	}
	var chunks []int
	err = v.Synthesize(Request{Text: sentence, ChunkSamples: 1600}, func(s []float32) bool {
		chunks = append(chunks, len(s))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 5 {
		t.Fatalf("%d chunks (%v): the audio did not stream", len(chunks), chunks)
	}
	for _, n := range chunks[:len(chunks)-1] {
		if n < 1600 {
			t.Errorf("chunk of %d samples, want at least 1600: %v", n, chunks)
		}
	}
	normal := len(speak(t, v, Request{Text: sentence}))
	slow := len(speak(t, v, Request{Text: sentence, DurationStretch: 2}))
	if r := float64(slow) / float64(normal); r < 1.7 || r > 2.3 {
		t.Errorf("duration stretch 2 made the audio %.2f times as long", r)
	}
	// The stretch was the utterance's, not the voice's.
	if again := len(speak(t, v, Request{Text: sentence})); again != normal {
		t.Errorf("after a stretched request: %d samples, before: %d", again, normal)
	}
}

func TestStop(t *testing.T) {
	v, err := LoadVoice("slt")
	if err != nil {
		t.Fatal(err)
	}
	long := sentence + " " + sentence + " " + sentence + " " + sentence
	calls := 0
	err = v.Synthesize(Request{Text: long, ChunkSamples: 1600}, func([]float32) bool {
		calls++
		return false
	})
	if err != nil || calls != 1 {
		t.Errorf("Synthesize = %v after %d calls; want nil after 1", err, calls)
	}
}

// Syntheses on several voices at once (and several on one voice) give what they give alone:
// the same samples for the diphone voice (kal); for the clustergen voices, which draw their
// unvoiced excitation from C's rand(), the same length and a waveform correlation of at least
// 0.9 (two serial runs measured 0.966 to 0.995).
func TestConcurrentVoices(t *testing.T) {
	names := []string{"slt", "kal", "awb", "rms", "slt", "kal"}
	want := map[string][]float32{}
	for _, n := range names {
		v, err := LoadVoice(n)
		if err != nil {
			t.Fatal(err)
		}
		want[n] = speak(t, v, Request{Text: sentence})
	}
	var wg sync.WaitGroup
	for round := 0; round < 3; round++ {
		for _, n := range names {
			wg.Go(func() {
				v, _ := LoadVoice(n)
				var got []float32
				if err := v.Synthesize(Request{Text: sentence}, func(s []float32) bool { got = append(got, s...); return true }); err != nil {
					t.Error(err)
				}
				if c := correlation(got, want[n]); len(got) != len(want[n]) || c < 0.9 || (n == "kal" && !slices.Equal(got, want[n])) {
					t.Errorf("voice %s: concurrent synthesis differs from the serial one (%d samples, %d alone, correlation %.3f)", n, len(got), len(want[n]), c)
				}
			})
		}
	}
	wg.Wait()
}

// correlation is the normalised cross-correlation of a and b at lag 0, over their common length.
func correlation(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range min(len(a), len(b)) {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func BenchmarkSynthesize(b *testing.B) {
	v, err := LoadVoice("slt")
	if err != nil {
		b.Fatal(err)
	}
	var samples int
	start := time.Now()
	for b.Loop() {
		_ = v.Synthesize(Request{Text: sentence}, func(s []float32) bool { samples += len(s); return true })
	}
	audio := float64(samples) / float64(v.SampleRate())
	b.ReportMetric(time.Since(start).Seconds()/audio, "rtf")
}
