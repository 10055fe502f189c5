package flite

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

// BenchmarkSynthesize reports the real-time factor (synthesis time over audio time) of each
// voice on the test speechtest.EnglishSentences.
func BenchmarkSynthesize(b *testing.B) {
	m := load(b, engine.LoadOptions{})
	for _, voice := range m.Info().Voices {
		b.Run(voice, func(b *testing.B) {
			var spent, audio time.Duration
			for b.Loop() {
				for _, s := range speechtest.EnglishSentences {
					res, err := m.Synthesize(context.Background(), engine.SynthesizeRequest{Text: s, Voice: voice}, func(engine.AudioChunk) error { return nil })
					if err != nil {
						b.Fatal(err)
					}
					spent += res.ProcessDuration
					audio += res.AudioDuration
				}
			}
			b.ReportMetric(spent.Seconds()/audio.Seconds(), "rtf")
		})
	}
}

// BenchmarkVersusCLI speaks each test sentence with Debian's flite command (a process per
// sentence, writing a WAV file, as a shell script would) and with this engine, in the same run,
// and reports our time over the command's. The audio must be the same length; for the
// deterministic voice kal16 the same samples.
func BenchmarkVersusCLI(b *testing.B) {
	cli, err := exec.LookPath("flite")
	if err != nil {
		b.Skip("the flite command is not installed (apt-get install flite)")
	}
	m := load(b, engine.LoadOptions{})
	for _, voice := range []string{"slt", "kal16"} {
		b.Run(voice, func(b *testing.B) {
			out := filepath.Join(b.TempDir(), "out.wav")
			var cliTime, ours time.Duration
			for b.Loop() {
				for _, s := range speechtest.EnglishSentences {
					start := time.Now()
					if msg, err := exec.Command(cli, "-voice", voice, "-t", s, "-o", out).CombinedOutput(); err != nil {
						b.Fatalf("%s: %v: %s", cli, err, msg)
					}
					cliTime += time.Since(start)

					start = time.Now()
					var samples []float32
					_, err := m.Synthesize(context.Background(), engine.SynthesizeRequest{Text: s, Voice: voice}, func(c engine.AudioChunk) error {
						samples = append(samples, c.Samples...)
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
					ours += time.Since(start)
					compareCLI(b, out, samples, voice == "kal16")
				}
			}
			b.ReportMetric(ours.Seconds()/cliTime.Seconds(), "ours/cli")
		})
	}
}

func compareCLI(b *testing.B, path string, ours []float32, exact bool) {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	theirs, err := audio.Decode(data)
	if err != nil {
		b.Fatal(err)
	}
	if len(theirs.Samples) != len(ours) {
		b.Fatalf("the command made %d samples, we made %d", len(theirs.Samples), len(ours))
	}
	if !exact {
		return
	}
	for i := range ours {
		if ours[i] != theirs.Samples[i] {
			b.Fatalf("sample %d differs: %v, the command's %v", i, ours[i], theirs.Samples[i])
		}
	}
}
