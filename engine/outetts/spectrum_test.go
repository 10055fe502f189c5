package outetts

import (
	"math"
	"math/cmplx"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/dsp/fourier"
)

// analyse is the forward STFT that istft inverts: the signal zero-padded by (n-hop)/2 on both
// sides, framed every hop samples, windowed by the same periodic Hann window, and each frame's
// spectrum stored as log-magnitudes then phases.
func analyse(x []float64, n, hop int) []float32 {
	pad := (n - hop) / 2
	padded := make([]float64, len(x)+2*pad+n)
	copy(padded[pad:], x)
	frames := len(x) / hop
	fft := fourier.NewFFT(n)
	buf := make([]float64, n)
	var spec []float32
	for f := range frames {
		for i := range buf {
			buf[i] = padded[f*hop+i] * 0.5 * (1 - math.Cos(2*math.Pi*float64(i)/float64(n)))
		}
		coeff := fft.Coefficients(nil, buf)
		phases := make([]float32, len(coeff))
		for k, c := range coeff {
			spec = append(spec, float32(math.Log(max(cmplx.Abs(c), 1e-30))))
			phases[k] = float32(cmplx.Phase(c))
		}
		spec = append(spec, phases...)
	}
	return spec
}

func TestISTFTReconstructs(t *testing.T) {
	const n, hop, frames = 1280, 320, 40
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, frames*hop)
	for i := range x {
		tt := float64(i) / 24000
		x[i] = 0.2*math.Sin(2*math.Pi*220*tt) + 0.1*math.Sin(2*math.Pi*3150*tt+1) + 0.01*rng.NormFloat64()
	}
	spec := analyse(x, n, hop)
	s := newISTFT(n, hop)
	y, err := s.synthesize(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(y) != frames*hop {
		t.Fatalf("%d samples from %d frames, want %d", len(y), frames, frames*hop)
	}
	var worst float64
	// The first and last frames see the zero padding; everything else must come back exactly.
	for i := n; i < len(y)-n; i++ {
		worst = max(worst, math.Abs(float64(y[i])-x[i]))
	}
	if worst > 1e-4 {
		t.Errorf("largest error away from the edges %g, want < 1e-4", worst)
	}
	if _, err := s.synthesize(spec[:len(spec)-1]); err == nil {
		t.Error("a partial frame was accepted")
	}
}

func TestISTFTClampsMagnitude(t *testing.T) {
	const n, hop = 64, 16
	s := newISTFT(n, hop)
	spec := make([]float32, 8*s.frameSize())
	for f := range 8 {
		spec[f*s.frameSize()] = 50 // DC log-magnitude: e^50, capped at maxMagnitude
	}
	y, err := s.synthesize(spec)
	if err != nil {
		t.Fatal(err)
	}
	// A DC bin of magnitude m alone is the constant m/n in every frame.
	want := maxMagnitude / float64(n)
	for i := n; i < len(y)-n; i++ {
		if math.Abs(float64(y[i])-want) > 1e-5 {
			t.Fatalf("sample %d = %g, want %g", i, y[i], want)
		}
	}
}

// BenchmarkISTFT measures the spectrum-to-wave step alone at its real size (1280-point frames,
// hop 320): rtf is its time over the length of the audio it makes.
func BenchmarkISTFT(b *testing.B) {
	const frames = 75 // one second at 24 kHz
	s := newISTFT(1280, 320)
	spec := make([]float32, frames*s.frameSize())
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range spec {
		spec[i] = float32(rng.NormFloat64())
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.synthesize(spec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "rtf")
}
