// Package audio is the one place where the node decodes, converts and encodes audio for its
// speech engines. Engines see only mono float32 samples in [-1, 1] at their model's rate; this
// package turns uploaded files (WAV, MP3, FLAC, raw PCM) into that, resamples between rates, and
// encodes what text-to-speech produces into the formats clients ask for (wav, pcm, flac, mp3, opus).
//
// Invariants:
//   - Samples are float32 in [-1, 1], interleaved when there is more than one channel. Integer
//     samples of n bits become v / 2^(n-1); float samples are clamped and NaN becomes 0.
//   - Decoding never panics and never allocates from what a header claims, only from the data
//     that is there: hostile input yields an error wrapping ErrCorrupt, ErrUnsupported or
//     ErrTooLong.
//   - Encoders stream: every Write hands what it encoded to the writer, so playback can start
//     before the end.
//
// Pure Go (builds with CGO_ENABLED=0); mp3 and opus output run the lame and opusenc programs.
package audio

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Errors that callers branch on (the HTTP layer maps them to statuses). Every error this package
// returns for bad input wraps one of them, with a message naming what is wrong.
var (
	// ErrUnsupported means the data is audio in a container or codec this package cannot decode,
	// or an output format it cannot encode; the message says which ones it can.
	ErrUnsupported = errors.New("unsupported audio format")
	// ErrCorrupt means the data is truncated or invalid.
	ErrCorrupt = errors.New("corrupt or truncated audio")
	// ErrTooLong means the decoded audio passed the Decoder's MaxDuration or MaxSamples.
	ErrTooLong = errors.New("audio too long")
	// ErrEncoderMissing means an output format needs an encoder program that is not installed;
	// the message names the package to install.
	ErrEncoderMissing = errors.New("audio encoder not installed")
)

// Rates outside [MinRate, MaxRate] are rejected by decoders and encoders: lower ones are not
// audio, higher ones would let a tiny header request absurd amounts of work.
const (
	MinRate = 1000
	MaxRate = 384000
)

// maxChannels bounds the channel count a decoder accepts (FLAC's own limit).
const maxChannels = 8

// decodable is appended to ErrUnsupported messages of decoders: what to send instead.
const decodable = "send WAV (PCM or float), MP3, FLAC or raw PCM s16le"

// Audio is decoded audio: Samples holds Channels interleaved channels at Rate frames a second.
type Audio struct {
	Rate     int
	Channels int
	Samples  []float32
}

// Frames returns the number of sample frames (samples per channel).
func (a Audio) Frames() int {
	if a.Channels <= 0 {
		return 0
	}
	return len(a.Samples) / a.Channels
}

// Duration returns how long the audio plays.
func (a Audio) Duration() time.Duration {
	return framesDuration(int64(a.Frames()), a.Rate)
}

// Mono returns the audio with its channels averaged into one. Mono audio is returned as is,
// sharing its samples.
func (a Audio) Mono() Audio {
	if a.Channels <= 1 {
		return a
	}
	out := make([]float32, a.Frames())
	scale := 1 / float32(a.Channels)
	for i := range out {
		var sum float32
		for _, s := range a.Samples[i*a.Channels : (i+1)*a.Channels] {
			sum += s
		}
		out[i] = sum * scale
	}
	return Audio{Rate: a.Rate, Channels: 1, Samples: out}
}

// ToInt16 converts samples to 16-bit PCM, clamping to the int16 range; FromInt16 inverts it
// exactly for every int16 value.
func ToInt16(samples []float32) []int16 {
	out := make([]int16, len(samples))
	for i, s := range samples {
		out[i] = toInt16(s)
	}
	return out
}

// FromInt16 converts 16-bit PCM to samples, v / 32768.
func FromInt16(pcm []int16) []float32 {
	out := make([]float32, len(pcm))
	for i, v := range pcm {
		out[i] = float32(v) / 32768
	}
	return out
}

// toInt16 scales s by 32768, rounds to nearest and clamps; NaN becomes 0.
func toInt16(s float32) int16 {
	v := float64(s) * 32768
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	case v != v:
		return 0
	}
	return int16(math.Round(v))
}

// clampSample maps a float sample from a file into [-1, 1], NaN to 0.
func clampSample(v float64) float32 {
	switch {
	case v > 1:
		return 1
	case v < -1:
		return -1
	case v != v:
		return 0
	}
	return float32(v)
}

// framesDuration is the duration of frames at rate, without overflow for any real length.
func framesDuration(frames int64, rate int) time.Duration {
	if rate <= 0 {
		return 0
	}
	r := int64(rate)
	return time.Duration(frames/r)*time.Second + time.Duration(frames%r)*time.Second/time.Duration(r)
}

// checkShape rejects a rate or channel count no real audio has; what names the format.
func checkShape(what string, rate, channels int) error {
	if rate < MinRate || rate > MaxRate {
		return fmt.Errorf("%w: %s at %d Hz; rates from %d to %d Hz are supported", ErrUnsupported, what, rate, MinRate, MaxRate)
	}
	if channels < 1 || channels > maxChannels {
		return fmt.Errorf("%w: %s with %d channels; 1 to %d are supported", ErrUnsupported, what, channels, maxChannels)
	}
	return nil
}
