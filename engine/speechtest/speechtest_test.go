package speechtest

import (
	"io"
	"math"
	"slices"
	"testing"
)

func TestWER(t *testing.T) {
	for _, tc := range []struct {
		ref, hyp string
		errs     int
		words    int
	}{
		{"the cat sat", "the cat sat", 0, 3},
		{"The cat, sat.", "the CAT sat", 0, 3},
		{"the cat sat", "the bat sat", 1, 3},
		{"the cat sat", "the sat", 1, 3},
		{"the cat sat", "the big cat sat down", 2, 3},
		{"don't stop", "dont stop", 1, 2},
		{"", "words here", 2, 0},
		{"one two three four", "", 4, 4},
	} {
		rate, errs, words := WER(tc.ref, tc.hyp)
		if errs != tc.errs || words != tc.words {
			t.Errorf("WER(%q, %q) = %v, %d, %d; want %d errors over %d words", tc.ref, tc.hyp, rate, errs, words, tc.errs, tc.words)
		}
	}
}

func TestResample(t *testing.T) {
	// A 440 Hz tone keeps its frequency and amplitude from 8 kHz to 16 kHz and back down.
	tone := func(rate int) []float32 {
		s := make([]float32, rate)
		for i := range s {
			s[i] = float32(0.5 * math.Sin(2*math.Pi*440*float64(i)/float64(rate)))
		}
		return s
	}
	for _, rates := range [][2]int{{8000, 16000}, {22050, 16000}} {
		got := Resample(tone(rates[0]), rates[0], rates[1])
		want := tone(rates[1])
		if len(got) != len(want) {
			t.Fatalf("%v: %d samples, want %d", rates, len(got), len(want))
		}
		var worst float64
		for i := 100; i < len(want)-100; i++ { // the edges lack half the filter
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
		}
		if worst > 0.01 {
			t.Errorf("%v: largest error %.4f", rates, worst)
		}
	}
}

func TestReader(t *testing.T) {
	read := Reader([]float32{1, 2, 3, 4, 5}, 2)
	var got []float32
	for {
		chunk, err := read()
		got = append(got, chunk...)
		if err == io.EOF {
			break
		}
	}
	if !slices.Equal(got, []float32{1, 2, 3, 4, 5}) {
		t.Errorf("read %v", got)
	}
}
