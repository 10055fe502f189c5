package outetts_test

import (
	"os"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/outetts"
)

// BenchmarkOuteTTS measures text-to-speech on the tiny generated pair: rtf is processing time
// over audio duration (below 1 is faster than real time), codes/s the audio codes made per
// second. The weights are random, so the audio (and its length) is what the seed gives, the
// same every run. $SYN4PSE_BENCH_OUTETTS and $SYN4PSE_BENCH_VOCODER name a real pair instead
// (an OuteTTS GGUF and its WavTokenizer decoder GGUF).
func BenchmarkOuteTTS(b *testing.B) {
	var m engine.TTS
	if llm, voc := os.Getenv("SYN4PSE_BENCH_OUTETTS"), os.Getenv("SYN4PSE_BENCH_VOCODER"); llm != "" && voc != "" {
		var err error
		if m, err = outetts.New().LoadTTS(b.Context(), engine.LoadOptions{Path: llm, Vocoder: voc}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
	} else {
		m = loadOuteTTS(b)
	}
	const text = "The overall package from just two people is pretty remarkable."
	var audio, process time.Duration
	for b.Loop() {
		_, res, err := speakAll(b.Context(), m, text)
		if err != nil {
			b.Fatal(err)
		}
		audio += res.AudioDuration
		process += res.ProcessDuration
	}
	if audio == 0 {
		b.Fatal("no audio")
	}
	b.ReportMetric(process.Seconds()/audio.Seconds(), "rtf")
	b.ReportMetric(audio.Seconds()*75/process.Seconds(), "codes/s")
}
