package audio_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/internal/audio"
)

// middle drops the first and last tenth of samples, where the filter sees the silence around
// the signal.
func middle(samples []float32) []float32 {
	return samples[len(samples)/10 : len(samples)-len(samples)/10]
}

// zeroCrossingFrequency estimates the frequency of a sine from its upward zero crossings.
func zeroCrossingFrequency(samples []float32, rate int) float64 {
	first, last, n := -1.0, 0.0, 0
	for i := 1; i < len(samples); i++ {
		if samples[i-1] < 0 && samples[i] >= 0 {
			at := float64(i-1) + float64(-samples[i-1]/(samples[i]-samples[i-1]))
			if first < 0 {
				first = at
			}
			last, n = at, n+1
		}
	}
	return float64(n-1) * float64(rate) / (last - first)
}

// TestResampleKeepsTones resamples sines between the rates speech engines use and checks the
// output against the ideal sine at the output rate: frequency, amplitude and timing.
func TestResampleKeepsTones(t *testing.T) {
	for _, tc := range []struct {
		from, to int
		freq     float64
	}{
		{44100, 16000, 1000},
		{44100, 16000, 6000}, // near the top of the pass band
		{48000, 16000, 3000},
		{22050, 16000, 1000},
		{24000, 16000, 440},
		{16000, 24000, 1000},
		{8000, 16000, 2500},
		{16000, 8000, 1000},
		{44100, 16001, 1000}, // no small ratio: the filter interpolates between phases
	} {
		in := sine(tc.from, tc.freq, 0.5, 0.5)
		out := audio.Resample(audio.Audio{Rate: tc.from, Channels: 1, Samples: in}, tc.to)
		if out.Rate != tc.to || out.Channels != 1 {
			t.Fatalf("%d->%d: %d Hz, %d channels", tc.from, tc.to, out.Rate, out.Channels)
		}
		if want := int(math.Ceil(float64(len(in)) * float64(tc.to) / float64(tc.from))); len(out.Samples) != want {
			t.Errorf("%d->%d: %d samples; want %d", tc.from, tc.to, len(out.Samples), want)
		}
		if f := zeroCrossingFrequency(middle(out.Samples), tc.to); math.Abs(f-tc.freq) > 0.5 {
			t.Errorf("%d->%d: %v Hz tone comes out at %v Hz", tc.from, tc.to, tc.freq, f)
		}
		ideal := sine(tc.to, tc.freq, 0.5, 0.5)
		var errSum, sigSum float64
		for i, s := range out.Samples[len(out.Samples)/10 : len(ideal)*9/10] {
			e := float64(s - ideal[i+len(out.Samples)/10])
			errSum, sigSum = errSum+e*e, sigSum+float64(ideal[i+len(out.Samples)/10])*float64(ideal[i+len(out.Samples)/10])
		}
		snr := 10 * math.Log10(sigSum/errSum)
		t.Logf("%d->%d: %v Hz tone, %0.1f dB SNR", tc.from, tc.to, tc.freq, snr)
		if snr < 80 {
			t.Errorf("%d->%d: %v Hz tone is %0.1f dB above the error; want 80", tc.from, tc.to, tc.freq, snr)
		}
	}
}

// TestResampleRejectsAliases checks the anti-aliasing filter: tones above the output's Nyquist
// frequency must not fold back into the band.
func TestResampleRejectsAliases(t *testing.T) {
	for _, tc := range []struct {
		from, to int
		freq     float64
		minDB    float64
	}{
		{44100, 8000, 7000, 90},  // would alias to 1 kHz
		{44100, 16000, 9000, 80}, // would alias to 7 kHz
		{24000, 16000, 10000, 90},
		{48000, 16000, 12000, 90},
	} {
		in := sine(tc.from, tc.freq, 0.5, 0.5)
		out := audio.Resample(audio.Audio{Rate: tc.from, Channels: 1, Samples: in}, tc.to)
		db := 20 * math.Log10(rms(middle(in))/rms(middle(out.Samples)))
		t.Logf("%d->%d: %v Hz tone attenuated %0.1f dB", tc.from, tc.to, tc.freq, db)
		if db < tc.minDB {
			t.Errorf("%d->%d: a %v Hz tone is attenuated %0.1f dB; want %v", tc.from, tc.to, tc.freq, db, tc.minDB)
		}
	}
}

// TestResamplerStreamsLikeOneShot feeds the streaming Resampler random chunk sizes (empty and
// single samples included) and checks that its output is identical to Resample's.
func TestResamplerStreamsLikeOneShot(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]float32, 20000)
	for i := range noise {
		noise[i] = rng.Float32()*2 - 1
	}
	for _, rates := range [][2]int{{44100, 16000}, {16000, 24000}, {22050, 16000}, {16000, 16000}, {44100, 16001}, {8000, 48000}} {
		want := audio.Resample(audio.Audio{Rate: rates[0], Channels: 1, Samples: noise}, rates[1]).Samples
		r := audio.NewResampler(rates[0], rates[1])
		for round := range 2 { // a Resampler starts over after Flush
			var got []float32
			for in := noise; len(in) > 0; {
				n := min(len(in), []int{0, 1, 7, 160, 1000, 4096}[rng.IntN(6)])
				got = append(got, r.Process(in[:n])...)
				in = in[n:]
			}
			got = append(got, r.Flush()...)
			if len(got) != len(want) {
				t.Fatalf("%v round %d: %d samples streamed; one shot gives %d", rates, round, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%v round %d: sample %d streamed is %v; one shot gives %v", rates, round, i, got[i], want[i])
				}
			}
		}
	}
}

// TestResampleEdges covers DC gain, empty and tiny input, same-rate pass-through and stereo.
func TestResampleEdges(t *testing.T) {
	dc := make([]float32, 8000)
	for i := range dc {
		dc[i] = 0.5
	}
	out := audio.Resample(audio.Audio{Rate: 8000, Channels: 1, Samples: dc}, 22050).Samples
	for _, s := range middle(out) {
		if math.Abs(float64(s)-0.5) > 1e-4 {
			t.Fatalf("DC 0.5 comes out as %v", s)
		}
	}
	if got := audio.Resample(audio.Audio{Rate: 44100, Channels: 1}, 16000); len(got.Samples) != 0 || got.Rate != 16000 {
		t.Errorf("empty input gives %d samples at %d Hz", len(got.Samples), got.Rate)
	}
	if got := audio.Resample(audio.Audio{Rate: 44100, Channels: 1, Samples: []float32{1}}, 16000); len(got.Samples) != 1 {
		t.Errorf("one sample gives %d", len(got.Samples))
	}
	r := audio.NewResampler(16000, 16000)
	same := append(r.Process(dc[:10]), r.Flush()...)
	equalSamples(t, same, dc[:10], 0)

	left, right := sine(44100, 500, 0.5, 0.2), sine(44100, 1500, 0.25, 0.2)
	stereo := make([]float32, 2*len(left))
	for i := range left {
		stereo[2*i], stereo[2*i+1] = left[i], right[i]
	}
	got := audio.Resample(audio.Audio{Rate: 44100, Channels: 2, Samples: stereo}, 16000)
	wantLeft := audio.Resample(audio.Audio{Rate: 44100, Channels: 1, Samples: left}, 16000).Samples
	wantRight := audio.Resample(audio.Audio{Rate: 44100, Channels: 1, Samples: right}, 16000).Samples
	for i := range wantLeft {
		if got.Samples[2*i] != wantLeft[i] || got.Samples[2*i+1] != wantRight[i] {
			t.Fatalf("stereo frame %d is %v; want %v %v", i, got.Samples[2*i:2*i+2], wantLeft[i], wantRight[i])
		}
	}
}

// BenchmarkResample measures one-shot resampling of 60 s of mono audio, reporting how many
// times faster than real time it runs (the baseline: 1 is just fast enough to keep up).
func BenchmarkResample(b *testing.B) {
	for _, rates := range [][2]int{{44100, 16000}, {48000, 16000}, {24000, 16000}, {22050, 16000}, {16000, 24000}} {
		in := audio.Audio{Rate: rates[0], Channels: 1, Samples: sine(rates[0], 440, 0.5, 60)}
		b.Run(fmt.Sprintf("%dto%d", rates[0], rates[1]), func(b *testing.B) {
			b.SetBytes(int64(4 * len(in.Samples)))
			start := time.Now()
			for b.Loop() {
				audio.Resample(in, rates[1])
			}
			b.ReportMetric(60*float64(b.N)/time.Since(start).Seconds(), "x_realtime")
		})
	}
}
