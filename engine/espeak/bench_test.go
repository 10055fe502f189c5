package espeak

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/speechtest"
	"github.com/ekisa-team/syn4pse/internal/audio"
)

// BenchmarkSynthesize reports the real-time factor (time to the last sample over audio time)
// of the default voice on the test sentences, a process per sentence.
func BenchmarkSynthesize(b *testing.B) {
	m := load(b, engine.LoadOptions{})
	var spent, audio time.Duration
	for b.Loop() {
		for _, s := range speechtest.EnglishSentences {
			res, err := m.Synthesize(context.Background(), engine.SynthesizeRequest{Text: s}, func(engine.AudioChunk) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			spent += res.ProcessDuration
			audio += res.AudioDuration
		}
	}
	b.ReportMetric(spent.Seconds()/audio.Seconds(), "rtf")
}

// BenchmarkVersusCLI compares a request with running `espeak-ng -w file` on the same sentence,
// in the same run: both are one process; ours streams its output through a pipe instead of a
// file. The audio must be the same samples.
func BenchmarkVersusCLI(b *testing.B) {
	m := load(b, engine.LoadOptions{})
	out := filepath.Join(b.TempDir(), "out.wav")
	var cliTime, ours time.Duration
	for b.Loop() {
		for _, s := range speechtest.EnglishSentences {
			start := time.Now()
			if msg, err := exec.Command("espeak-ng", "-v", "en", "-w", out, s).CombinedOutput(); err != nil {
				b.Fatalf("espeak-ng: %v: %s", err, msg)
			}
			cliTime += time.Since(start)
			start = time.Now()
			var samples []float32
			if _, err := m.Synthesize(context.Background(), engine.SynthesizeRequest{Text: s}, func(c engine.AudioChunk) error {
				samples = append(samples, c.Samples...)
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			ours += time.Since(start)
			data, err := os.ReadFile(out)
			if err != nil {
				b.Fatal(err)
			}
			theirs, err := audio.Decode(data)
			if err != nil {
				b.Fatal(err)
			}
			if len(theirs.Samples) != len(samples) {
				b.Fatalf("%q: the command made %d samples, we made %d", s, len(theirs.Samples), len(samples))
			}
			for i := range samples {
				if samples[i] != theirs.Samples[i] {
					b.Fatalf("%q: sample %d differs", s, i)
				}
			}
		}
	}
	b.ReportMetric(ours.Seconds()/cliTime.Seconds(), "ours/cli")
}
