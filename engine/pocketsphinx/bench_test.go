package pocketsphinx

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/speechtest"
)

// librivoxAll is the five LibriVox recordings one after the other (about 34 s).
func librivoxAll(b *testing.B) []float32 {
	var all []float32
	for _, rec := range librivox(b) {
		all = append(all, rec.samples...)
	}
	return all
}

// BenchmarkTranscribe reports the real-time factor (decoding time over audio time) of a loaded
// model: rtf 0.25 decodes a minute of audio in 15 s on one core.
func BenchmarkTranscribe(b *testing.B) {
	m := loadModel(b, engine.LoadOptions{})
	samples := librivoxAll(b)
	var audio, spent time.Duration
	for b.Loop() {
		res, _, err := transcribe(b, context.Background(), m, samples)
		if err != nil {
			b.Fatal(err)
		}
		audio += res.AudioDuration
		spent += res.ProcessDuration
	}
	b.ReportMetric(spent.Seconds()/audio.Seconds(), "rtf")
}

// BenchmarkVersusCLI decodes the same WAV file with Debian's pocketsphinx_continuous and with
// this engine, in the same run, and reports our time over the command's: cold (load the model,
// decode, free it: what the command does) and warm (decode with a pooled decoder: what the node
// does). The transcripts must be the same word for word.
func BenchmarkVersusCLI(b *testing.B) {
	cli, err := exec.LookPath("pocketsphinx_continuous")
	if err != nil {
		b.Skip("pocketsphinx_continuous is not installed (apt-get install pocketsphinx)")
	}
	samples := librivoxAll(b)
	wav := filepath.Join(b.TempDir(), "librivox.wav")
	writeWAV(b, wav, samples, 16000)
	files, err := findModel(DefaultModelDir)
	if err != nil {
		b.Skip(err)
	}
	args := []string{"-infile", wav, "-hmm", files.acoustic, "-lm", files.lm, "-dict", files.dict, "-logfn", os.DevNull}
	// Chunks of a multiple of 2048 samples: the command's reads, so both see the same pieces.
	read := func() func() ([]float32, error) { return speechtest.Reader(samples, 8*pieceSamples) }
	var cliTime, cold, warm time.Duration
	var cliText, ourText string
	warmModel := loadModel(b, engine.LoadOptions{Parallel: 1})
	for b.Loop() {
		start := time.Now()
		out, err := exec.Command(cli, args...).Output()
		if err != nil {
			b.Fatalf("%s: %v", cli, err)
		}
		cliTime += time.Since(start)
		cliText = strings.Join(strings.Fields(string(out)), " ")

		start = time.Now()
		m, err := New().LoadSTT(context.Background(), engine.LoadOptions{Parallel: 1})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Transcribe(context.Background(), engine.TranscribeRequest{Read: read()}, func(engine.TranscriptEvent) error { return nil }); err != nil {
			b.Fatal(err)
		}
		m.Close()
		cold += time.Since(start)

		start = time.Now()
		res, err := warmModel.Transcribe(context.Background(), engine.TranscribeRequest{Read: read()}, func(engine.TranscriptEvent) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		warm += time.Since(start)
		ourText = res.Text
	}
	if ourText != cliText {
		b.Errorf("transcripts differ:\n  ours: %s\n  %s: %s", ourText, filepath.Base(cli), cliText)
	}
	audio := float64(len(samples)) / 16000
	n := float64(b.N)
	b.ReportMetric(cliTime.Seconds()/n/audio, "cli_rtf")
	b.ReportMetric(cold.Seconds()/cliTime.Seconds(), "cold/cli")
	b.ReportMetric(warm.Seconds()/cliTime.Seconds(), "warm/cli")
}

// writeWAV writes samples as a 16-bit mono WAV file.
func writeWAV(tb testing.TB, path string, samples []float32, rate int) {
	tb.Helper()
	pcm := toPCM(nil, samples)
	data := make([]byte, 44, 44+2*len(pcm))
	copy(data, "RIFF")
	binary.LittleEndian.PutUint32(data[4:], uint32(36+2*len(pcm)))
	copy(data[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(data[16:], 16)
	binary.LittleEndian.PutUint16(data[20:], 1)
	binary.LittleEndian.PutUint16(data[22:], 1)
	binary.LittleEndian.PutUint32(data[24:], uint32(rate))
	binary.LittleEndian.PutUint32(data[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(data[32:], 2)
	binary.LittleEndian.PutUint16(data[34:], 16)
	copy(data[36:], "data")
	binary.LittleEndian.PutUint32(data[40:], uint32(2*len(pcm)))
	for _, s := range pcm {
		data = binary.LittleEndian.AppendUint16(data, uint16(s))
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}
