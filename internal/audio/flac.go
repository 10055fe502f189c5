package audio

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/mewkiz/flac"
	"github.com/mewkiz/flac/frame"
)

// decodeFLAC decodes a FLAC stream of any bit depth and channel count with mewkiz/flac.
func (d Decoder) decodeFLAC(data []byte) (Audio, error) {
	stream, err := flac.New(bytes.NewReader(data))
	if err != nil {
		return Audio{}, fmt.Errorf("%w: FLAC header: %v", ErrCorrupt, err)
	}
	info := stream.Info
	rate, channels, bits := int(info.SampleRate), int(info.NChannels), int(info.BitsPerSample)
	if err := checkShape("FLAC", rate, channels); err != nil {
		return Audio{}, err
	}
	switch bits { // the depths a frame header can state; others defer to STREAMINFO, which mewkiz/flac does not read
	case 8, 12, 16, 20, 24:
	default:
		return Audio{}, fmt.Errorf("%w: FLAC with %d-bit samples; FLAC of 8, 12, 16, 20 or 24 bits is supported", ErrUnsupported, bits)
	}
	lim := d.limit(rate, channels)
	claimed := int64(min(info.NSamples, 1<<40)) * int64(channels)
	out := make([]float32, 0, lim.capHint(claimed, len(data), 4))
	scale := 1 / float64(int64(1)<<(bits-1))
	for n := 0; ; n++ {
		f, err := stream.ParseNext()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Audio{}, fmt.Errorf("%w: FLAC frame %d: %v", ErrCorrupt, n, err)
		}
		if err := checkFLACFrame(f, channels, bits); err != nil {
			return Audio{}, fmt.Errorf("FLAC frame %d: %w", n, err)
		}
		out = appendFLACFrame(out, f, scale)
		if err := lim.check(len(out)); err != nil {
			return Audio{}, err
		}
	}
	if got := int64(len(out) / channels); info.NSamples != 0 && got < int64(info.NSamples) {
		return Audio{}, fmt.Errorf("%w: FLAC ends after %d of its %d samples", ErrCorrupt, got, info.NSamples)
	}
	return Audio{Rate: rate, Channels: channels, Samples: out}, nil
}

// checkFLACFrame rejects a frame whose layout differs from the stream's: samples of another
// shape would be silently misread.
func checkFLACFrame(f *frame.Frame, channels, bits int) error {
	if f.Channels.Count() != channels || len(f.Subframes) != channels {
		return fmt.Errorf("%w: %d channels in a %d-channel stream", ErrCorrupt, f.Channels.Count(), channels)
	}
	if int(f.BitsPerSample) != bits {
		return fmt.Errorf("%w: %d-bit samples in a %d-bit stream", ErrCorrupt, f.BitsPerSample, bits)
	}
	for _, sub := range f.Subframes {
		if len(sub.Samples) != int(f.BlockSize) {
			return fmt.Errorf("%w: subframe of %d samples in a block of %d", ErrCorrupt, len(sub.Samples), f.BlockSize)
		}
	}
	return nil
}

// appendFLACFrame interleaves the frame's channels onto out as floats.
func appendFLACFrame(out []float32, f *frame.Frame, scale float64) []float32 {
	for i := range int(f.BlockSize) {
		for _, sub := range f.Subframes {
			out = append(out, clampSample(float64(sub.Samples[i])*scale))
		}
	}
	return out
}
