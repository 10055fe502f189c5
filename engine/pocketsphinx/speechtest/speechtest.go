// Package speechtest has what the tests of the speech engines share: word error rate, a
// resampler and a reader that feeds samples to engine.STT in chunks. It lives beside the
// PocketSphinx engine because every speech test scores its audio with PocketSphinx.
package speechtest

import (
	"io"
	"math"
	"strings"
	"unicode"
)

// Words splits text into lowercase words without punctuation ("Don't stop." is "don't",
// "stop"): apostrophes inside a word stay, everything else that is not a letter or digit splits.
func Words(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}

// WER is the word error rate of hyp against ref: the word-level Levenshtein distance
// (substitutions, insertions, deletions) over the number of reference words, after Words.
// It returns the distance and the reference length too; an empty ref gives the number of
// hypothesis words as the rate.
func WER(ref, hyp string) (rate float64, errs, words int) {
	r, h := Words(ref), Words(hyp)
	prev := make([]int, len(h)+1)
	cur := make([]int, len(h)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(r); i++ {
		cur[0] = i
		for j := 1; j <= len(h); j++ {
			sub := prev[j-1]
			if r[i-1] != h[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	errs = prev[len(h)]
	if len(r) == 0 {
		return float64(errs), errs, 0
	}
	return float64(errs) / float64(len(r)), errs, len(r)
}

// Resample converts mono samples from one rate to another with a windowed-sinc (Hann, 16
// zero crossings) low-pass interpolator: good enough that a recogniser hears no artefacts.
func Resample(samples []float32, from, to int) []float32 {
	if from == to || len(samples) == 0 {
		return append([]float32(nil), samples...)
	}
	const zeros = 16
	ratio := float64(to) / float64(from)
	cutoff := min(1, ratio) // of the input's Nyquist frequency
	n := int(math.Round(float64(len(samples)) * ratio))
	out := make([]float32, n)
	half := float64(zeros) / cutoff
	for i := range out {
		center := float64(i) / ratio
		lo, hi := int(math.Ceil(center-half)), int(math.Floor(center+half))
		var sum, norm float64
		for k := max(lo, 0); k <= min(hi, len(samples)-1); k++ {
			x := (float64(k) - center) * cutoff
			w := 0.5 + 0.5*math.Cos(math.Pi*x/zeros)
			s := w * sinc(x)
			sum += s * float64(samples[k])
			norm += s
		}
		if norm != 0 {
			out[i] = float32(sum / norm)
		}
	}
	return out
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// Reader returns a TranscribeRequest.Read over samples, chunk samples at a time, then io.EOF.
func Reader(samples []float32, chunk int) func() ([]float32, error) {
	return func() ([]float32, error) {
		if len(samples) == 0 {
			return nil, io.EOF
		}
		n := min(chunk, len(samples))
		out := samples[:n]
		samples = samples[n:]
		return out, nil
	}
}

// EnglishSentences are plain sentences for text-to-speech voices to speak and a recogniser to
// score: common words, no names or numbers (60 words).
var EnglishSentences = []string{
	"The weather is nice today.",
	"Please open the door and close the window.",
	"I would like a cup of hot coffee.",
	"We can meet at the station tomorrow morning.",
	"The children are playing in the garden.",
	"She bought three red apples at the market.",
	"Turn left at the next corner.",
	"My brother works in a small office in the city.",
}
