// Package speechtest has what the tests of the speech engines share: word error rate, a
// resampler and a reader that feeds samples to engine.STT in chunks.
package speechtest

import (
	"io"
	"strings"
	"unicode"

	"github.com/ekisa-team/syn4pse/internal/audio"
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

// Resample converts mono samples from one rate to another, as the node does (internal/audio).
func Resample(samples []float32, from, to int) []float32 {
	return audio.Resample(audio.Audio{Rate: from, Channels: 1, Samples: samples}, to).Samples
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
