package audio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
)

// Decoder decodes whole audio files under limits. The zero value has no duration limit and the
// default sample limit; set MaxDuration for anything that arrives over the network.
type Decoder struct {
	// MaxDuration, when positive, makes decoding fail with ErrTooLong as soon as the decoded
	// audio passes it, before the rest is decoded.
	MaxDuration time.Duration
	// MaxSamples bounds the decoded samples of all channels together (4 bytes each), whatever
	// the rate and channel count: compressed formats can expand a thousandfold, so a duration
	// alone does not bound memory. Zero means DefaultMaxSamples.
	MaxSamples int
}

// DefaultMaxSamples is the sample limit of a Decoder that sets none: 1 GiB of samples, over four
// hours of 16 kHz mono or 46 minutes of 48 kHz stereo.
const DefaultMaxSamples = 1 << 28

// Decode decodes data under DefaultMaxSamples and no duration limit; see Decoder.Decode.
func Decode(data []byte) (Audio, error) {
	return Decoder{}.Decode(data)
}

// DecodeRaw decodes headerless s16le PCM under DefaultMaxSamples; see Decoder.DecodeRaw.
func DecodeRaw(data []byte, rate, channels int) (Audio, error) {
	return Decoder{}.DecodeRaw(data, rate, channels)
}

// Decode recognises the container by its first bytes (WAV/RF64, MP3 with or without ID3 tags,
// FLAC) and decodes it at its own rate and channel count.
func (d Decoder) Decode(data []byte) (a Audio, err error) {
	defer func() {
		// The MP3 and FLAC libraries index slices from what the stream says; a hostile stream
		// must come back as an error, not take the node down.
		if r := recover(); r != nil {
			a, err = Audio{}, fmt.Errorf("%w: decoder failed on invalid data (%v)", ErrCorrupt, r)
		}
	}()
	if len(data) == 0 {
		return Audio{}, fmt.Errorf("%w: no data", ErrCorrupt)
	}
	if isWAV(data) {
		return d.decodeWAV(data)
	}
	body, err := skipID3v2(data)
	if err != nil {
		return Audio{}, err
	}
	switch {
	case bytes.HasPrefix(body, []byte("fLaC")):
		return d.decodeFLAC(body)
	case len(body) < len(data) || isMP3(body):
		return d.decodeMP3(body)
	}
	return Audio{}, fmt.Errorf("%w: %s; %s", ErrUnsupported, sniffOther(data), decodable)
}

// DecodeRaw decodes headerless signed 16-bit little-endian PCM of the given rate and channels.
func (d Decoder) DecodeRaw(data []byte, rate, channels int) (Audio, error) {
	if err := checkShape("raw PCM", rate, channels); err != nil {
		return Audio{}, err
	}
	if len(data)%(2*channels) != 0 {
		return Audio{}, fmt.Errorf("%w: raw PCM of %d bytes is not a whole number of %d-channel 16-bit frames", ErrCorrupt, len(data), channels)
	}
	lim := d.limit(rate, channels)
	if err := lim.check(len(data) / 2); err != nil {
		return Audio{}, err
	}
	out := make([]float32, len(data)/2)
	for i := range out {
		out[i] = float32(int16(binary.LittleEndian.Uint16(data[2*i:]))) / 32768
	}
	return Audio{Rate: rate, Channels: channels, Samples: out}, nil
}

// sampleLimit is the tighter of a Decoder's limits, in samples of one stream.
type sampleLimit struct {
	max int64
	err error // what passing max means
}

// limit converts d's limits to samples at rate and channels.
func (d Decoder) limit(rate, channels int) sampleLimit {
	maxSamples := int64(d.MaxSamples)
	if maxSamples <= 0 {
		maxSamples = DefaultMaxSamples
	}
	l := sampleLimit{max: maxSamples, err: fmt.Errorf("%w: more than %d samples decoded (%d MiB); send shorter audio", ErrTooLong, maxSamples, maxSamples*4>>20)}
	if d.MaxDuration > 0 {
		sec, frac := int64(d.MaxDuration/time.Second), int64(d.MaxDuration%time.Second)
		frames := sec*int64(rate) + frac*int64(rate)/int64(time.Second)
		if samples := frames * int64(channels); samples < l.max {
			l = sampleLimit{max: samples, err: fmt.Errorf("%w: longer than the %v limit; send shorter audio", ErrTooLong, d.MaxDuration)}
		}
	}
	return l
}

// check fails with ErrTooLong when samples passes the limit.
func (l sampleLimit) check(samples int) error {
	if int64(samples) > l.max {
		return l.err
	}
	return nil
}

// capHint bounds a preallocation: what the header claims, but never more than the limit or
// perData samples for each byte of input, so a lying header costs nothing.
func (l sampleLimit) capHint(claimed int64, dataLen, perData int) int {
	c := min(claimed, int64(dataLen)*int64(perData), l.max+1)
	return int(max(c, 0))
}

// sniffOther names the container of data this package does not decode, for error messages.
func sniffOther(data []byte) string {
	has := func(off int, magic string) bool {
		return len(data) >= off+len(magic) && string(data[off:off+len(magic)]) == magic
	}
	switch {
	case has(0, "OggS"):
		return "Ogg (Opus or Vorbis)"
	case has(4, "ftyp"):
		return "MP4/M4A"
	case has(0, "\x1a\x45\xdf\xa3"):
		return "WebM/Matroska"
	case has(0, "FORM") && (has(8, "AIFF") || has(8, "AIFC")):
		return "AIFF"
	case has(0, "RIFF"):
		return "RIFF file that is not WAVE"
	case has(0, "#!AMR"):
		return "AMR"
	case has(0, "caff"):
		return "Core Audio (CAF)"
	case len(data) >= 2 && data[0] == 0xff && data[1]&0xf6 == 0xf0:
		return "AAC (ADTS)"
	case len(data) >= 2 && data[0] == 0xff && data[1]&0xe0 == 0xe0:
		return "MPEG audio layer I or II"
	}
	return "unrecognised data"
}
