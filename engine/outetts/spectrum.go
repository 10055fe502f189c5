package outetts

import (
	"fmt"
	"math"
	"math/cmplx"

	"gonum.org/v1/gonum/dsp/fourier"
)

// maxMagnitude caps a frame's magnitudes, as WavTokenizer's head does (exp of a log-magnitude
// can overflow on a bad frame).
const maxMagnitude = 100

// istft turns a vocoder's spectrum frames back into a wave: per frame an inverse real FFT,
// windowed by a periodic Hann window, overlap-added every hop samples and divided by the summed
// squared window (so analysis and synthesis windows together reconstruct exactly), with the
// (n-hop)/2 samples of padding cut from both ends: WavTokenizer's ISTFT with "same" padding.
// Frames are 2·(n/2+1) floats: the log-magnitudes of bins 0..n/2, then their phases.
// Not safe for concurrent use.
type istft struct {
	n, hop int
	fft    *fourier.FFT
	window []float64
	coeff  []complex128
	frame  []float64
}

// newISTFT prepares an inverse STFT of n-point frames every hop samples.
func newISTFT(n, hop int) *istft {
	w := make([]float64, n)
	for i := range w {
		w[i] = 0.5 * (1 - math.Cos(2*math.Pi*float64(i)/float64(n)))
	}
	return &istft{n: n, hop: hop, fft: fourier.NewFFT(n), window: w,
		coeff: make([]complex128, n/2+1), frame: make([]float64, n)}
}

// frameSize is the number of floats per spectrum frame.
func (s *istft) frameSize() int { return 2 * (s.n/2 + 1) }

// synthesize returns the wave of the frames (len(spec) / frameSize of them, one after another):
// frames × hop samples.
func (s *istft) synthesize(spec []float32) ([]float32, error) {
	size := s.frameSize()
	if len(spec)%size != 0 {
		return nil, fmt.Errorf("spectrum of %d values is not whole frames of %d", len(spec), size)
	}
	frames := len(spec) / size
	if frames == 0 {
		return nil, nil
	}
	bins := s.n / 2
	total := (frames-1)*s.hop + s.n
	sum := make([]float64, total)
	env := make([]float64, total)
	for f := range frames {
		fr := spec[f*size : (f+1)*size]
		for k := range bins + 1 {
			mag := math.Min(math.Exp(float64(fr[k])), maxMagnitude)
			s.coeff[k] = cmplx.Rect(mag, float64(fr[bins+1+k]))
		}
		// The inverse of a real signal's spectrum ignores the imaginary parts of the DC and
		// Nyquist bins; gonum's Sequence is unnormalised.
		s.fft.Sequence(s.frame, s.coeff)
		off := f * s.hop
		for i, v := range s.frame {
			w := s.window[i]
			sum[off+i] += v / float64(s.n) * w
			env[off+i] += w * w
		}
	}
	pad := (s.n - s.hop) / 2
	out := make([]float32, total-2*pad)
	for i := range out {
		if e := env[pad+i]; e > 1e-11 {
			out[i] = float32(sum[pad+i] / e)
		}
	}
	return out, nil
}
