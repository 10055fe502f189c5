package audio

import (
	"fmt"
	"math"
)

// Filter design of the resampler: a Kaiser-windowed sinc low-pass at resampleCutoff of the lower
// rate's Nyquist frequency, resampleZeros zero crossings on each side. It passes up to about
// 75% of the lower Nyquist frequency flat (6 kHz of 8 kHz for 16 kHz speech) and rejects what
// would alias by more than 80 dB (tested), at 54 multiply-adds per output sample times the
// factor by which the rate falls (146 from 44.1 to 16 kHz).
const (
	resampleZeros  = 24
	resampleCutoff = 0.91
	resampleBeta   = 8.6
	// maxPhases bounds the filter table: rate pairs that need more phases (like 44100 -> 16001)
	// interpolate linearly between neighbouring ones.
	maxPhases = 1024
	// maxTable bounds the table in floats (4 MiB), for extreme ratios that need long filters.
	maxTable = 1 << 20
)

// Resampler converts a stream of mono samples from one rate to another. Output sample n is the
// band-limited input at time n*from/to input samples, so the concatenated output of any split
// of the input into Process calls, followed by Flush, is identical, sample for sample, to
// Resample of the whole. It is not safe for concurrent use.
type Resampler struct {
	up, down int       // to and from divided by their greatest common divisor
	step     int       // whole input samples to advance per output sample: down / up
	stepFrac int       // and the remainder, in units of 1/up
	taps     int       // filter length; output n reads window buf[start : start+taps]
	rows     int       // phases in the table (== up unless interpolating)
	table    []float32 // (rows+1) rows of taps coefficients, one per fractional offset
	buf      []float32 // input not yet consumed, preceded by taps/2-1 samples of history
	start    int       // index in buf of the next output's window
	phase    int       // fractional input position of the next output, in units of 1/up
	inTotal  int64     // input samples received since the start of the stream
	outTotal int64     // output samples produced since the start of the stream
}

// NewResampler returns a Resampler from rate from to rate to. It panics if a rate is not
// positive; rates from decoded audio are always in [MinRate, MaxRate].
func NewResampler(from, to int) *Resampler {
	if from <= 0 || to <= 0 {
		panic(fmt.Sprintf("audio.NewResampler(%d, %d): rates must be positive", from, to))
	}
	g := gcd(from, to)
	r := &Resampler{up: to / g, down: from / g}
	r.step, r.stepFrac = r.down/r.up, r.down%r.up
	// fc is the cutoff in cycles per input sample; the filter spans resampleZeros zero
	// crossings of its sinc on each side.
	fc := 0.5 * resampleCutoff * math.Min(1, float64(to)/float64(from))
	half := int(math.Ceil(resampleZeros / (2 * fc)))
	if from == to {
		half = 1 // a single unit tap: the stream passes through unchanged
	}
	r.taps = 2 * half
	r.rows = min(r.up, maxPhases, max(16, maxTable/r.taps))
	r.table = make([]float32, 0, (r.rows+1)*r.taps)
	for row := 0; row <= r.rows; row++ {
		r.table = appendFilterRow(r.table, float64(row)/float64(r.rows), half, fc)
	}
	r.Reset()
	return r
}

// Reset forgets the stream so far; the next Process starts a new one.
func (r *Resampler) Reset() {
	r.buf = append(r.buf[:0], make([]float32, r.taps/2-1)...)
	r.start, r.phase, r.inTotal, r.outTotal = 0, 0, 0, 0
}

// Process takes the next input samples and returns the output they complete. The output lags
// by half the filter: 27 input samples when the rate rises, 27*from/to when it falls (73 from
// 44.1 to 16 kHz). Flush returns the rest.
func (r *Resampler) Process(in []float32) []float32 {
	r.buf = append(r.buf, in...)
	r.inTotal += int64(len(in))
	out := r.run(make([]float32, 0, r.pending()), -1)
	r.compact()
	return out
}

// Flush returns the output still held back at the end of the stream, so that the stream's
// output has ceil(inputs*to/from) samples, and resets the Resampler for a new stream.
func (r *Resampler) Flush() []float32 {
	want := ceilDiv(r.inTotal*int64(r.up), int64(r.down))
	r.buf = append(r.buf, make([]float32, r.taps/2)...) // the future is silence
	out := r.run(make([]float32, 0, want-r.outTotal), want)
	r.Reset()
	return out
}

// pending bounds the number of outputs the input in buf can give.
func (r *Resampler) pending() int {
	return int(ceilDiv(int64(len(r.buf)-r.start)*int64(r.up), int64(r.down)))
}

// run appends outputs while their window is in buf, stopping at limit outputs if it is not -1.
func (r *Resampler) run(out []float32, limit int64) []float32 {
	for r.start+r.taps <= len(r.buf) && r.outTotal != limit {
		out = append(out, r.output(r.buf[r.start:r.start+r.taps]))
		r.outTotal++
		r.start += r.step
		r.phase += r.stepFrac
		if r.phase >= r.up {
			r.phase -= r.up
			r.start++
		}
	}
	return out
}

// output filters one window at the current phase.
func (r *Resampler) output(window []float32) float32 {
	if r.rows == r.up {
		return dot(window, r.row(r.phase))
	}
	pos := int64(r.phase) * int64(r.rows)
	i, frac := int(pos/int64(r.up)), float32(pos%int64(r.up))/float32(r.up)
	a := dot(window, r.row(i))
	if frac == 0 {
		return a
	}
	return a + frac*(dot(window, r.row(i+1))-a)
}

// row returns the coefficients of table row i.
func (r *Resampler) row(i int) []float32 {
	return r.table[i*r.taps : (i+1)*r.taps]
}

// compact drops the input no future output needs.
func (r *Resampler) compact() {
	n := copy(r.buf, r.buf[r.start:])
	r.buf = r.buf[:n]
	r.start = 0
}

// appendFilterRow appends the filter taps for an output that lies frac input samples after the
// window's centre sample (tap half-1), normalised to unit DC gain.
func appendFilterRow(table []float32, frac float64, half int, fc float64) []float32 {
	row := make([]float64, 2*half)
	var sum float64
	for j := range row {
		d := float64(j-(half-1)) - frac // distance of tap j from the output's time
		row[j] = 2 * fc * sinc(2*fc*d) * kaiser(d/float64(half), resampleBeta)
		sum += row[j]
	}
	for _, c := range row {
		table = append(table, float32(c/sum))
	}
	return table
}

// sinc is sin(pi x) / (pi x).
func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// kaiser is the Kaiser window at x in [-1, 1], zero outside.
func kaiser(x, beta float64) float64 {
	if x <= -1 || x >= 1 {
		return 0
	}
	return besselI0(beta*math.Sqrt(1-x*x)) / besselI0(beta)
}

// besselI0 is the modified Bessel function of the first kind, order 0, by its power series.
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; term > 1e-12*sum; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
	}
	return sum
}

// dot is the inner product of x and h (len(x) >= len(h)), with four accumulators so the
// loop pipelines.
func dot(x, h []float32) float32 {
	x = x[:len(h)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(h); i += 4 {
		s0 += x[i] * h[i]
		s1 += x[i+1] * h[i+1]
		s2 += x[i+2] * h[i+2]
		s3 += x[i+3] * h[i+3]
	}
	for ; i < len(h); i++ {
		s0 += x[i] * h[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Resample returns a at rate, each channel through its own Resampler. Audio already at rate is
// returned as is, sharing its samples. It panics if a rate is not positive.
func Resample(a Audio, rate int) Audio {
	if a.Rate == rate || a.Channels <= 0 {
		return a
	}
	if a.Channels == 1 {
		r := NewResampler(a.Rate, rate)
		return Audio{Rate: rate, Channels: 1, Samples: append(r.Process(a.Samples), r.Flush()...)}
	}
	var out []float32
	for c := range a.Channels {
		r := NewResampler(a.Rate, rate)
		ch := channel(a, c)
		resampled := append(r.Process(ch), r.Flush()...)
		if out == nil {
			out = make([]float32, len(resampled)*a.Channels)
		}
		for i, s := range resampled {
			out[i*a.Channels+c] = s
		}
	}
	return Audio{Rate: rate, Channels: a.Channels, Samples: out}
}

// channel returns channel c of a's interleaved samples.
func channel(a Audio, c int) []float32 {
	out := make([]float32, a.Frames())
	for i := range out {
		out[i] = a.Samples[i*a.Channels+c]
	}
	return out
}

// gcd is the greatest common divisor of a and b.
func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ceilDiv is a/b rounded up, for non-negative a and positive b.
func ceilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}
