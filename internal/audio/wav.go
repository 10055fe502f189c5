package audio

import (
	"encoding/binary"
	"fmt"
	"math"
)

// WAV format tags, and the sub-format of WAVE_FORMAT_EXTENSIBLE that carries one of them.
const (
	wavePCM        = 0x0001
	waveFloat      = 0x0003
	waveExtensible = 0xfffe
)

// unknownSize is the chunk size streaming writers put in a header they cannot go back to fix;
// RF64 uses it to say "see the ds64 chunk".
const unknownSize = 0xffffffff

// isWAV reports whether data starts like a RIFF/RF64/BW64 WAVE file (possibly truncated).
func isWAV(data []byte) bool {
	if len(data) < 4 {
		return false
	}
	switch string(data[:4]) {
	case "RIFF", "RF64", "BW64":
		return len(data) < 12 || string(data[8:12]) == "WAVE"
	}
	return false
}

// wavFormat is what a fmt chunk says about the samples.
type wavFormat struct {
	float    bool
	channels int
	rate     int
	width    int // bytes per sample in the data (the container size)
}

// wavChunk is one chunk header and where its body lies in the file.
type wavChunk struct {
	id         string
	size       uint32
	body, next int
}

// decodeWAV decodes a WAV file: it walks the chunks, reads fmt, and converts the data chunk.
func (d Decoder) decodeWAV(data []byte) (Audio, error) {
	if len(data) < 12 {
		return Audio{}, fmt.Errorf("%w: WAV header truncated at %d bytes", ErrCorrupt, len(data))
	}
	var (
		format     *wavFormat
		dataSize64 = int64(-1) // from an RF64 ds64 chunk
	)
	for off := 12; ; {
		c, err := readWAVChunk(data, off)
		if err != nil {
			return Audio{}, err
		}
		switch c.id {
		case "ds64":
			if dataSize64, err = parseDS64(data[c.body:c.next]); err != nil {
				return Audio{}, err
			}
		case "fmt ":
			if format, err = parseWAVFormat(data[c.body:c.next]); err != nil {
				return Audio{}, err
			}
		case "data":
			if format == nil {
				return Audio{}, fmt.Errorf("%w: WAV data chunk comes before the fmt chunk", ErrCorrupt)
			}
			body, err := wavDataBody(data, c, dataSize64)
			if err != nil {
				return Audio{}, err
			}
			return d.wavSamples(*format, body)
		}
		off = c.next
	}
}

// readWAVChunk reads the chunk header at off. A data chunk may run past the end (its size is
// checked by wavDataBody); any other chunk must fit.
func readWAVChunk(data []byte, off int) (wavChunk, error) {
	if off+8 > len(data) {
		return wavChunk{}, fmt.Errorf("%w: WAV has no data chunk", ErrCorrupt)
	}
	c := wavChunk{id: string(data[off : off+4]), size: binary.LittleEndian.Uint32(data[off+4:]), body: off + 8}
	if c.id == "data" {
		return c, nil
	}
	end := int64(c.body) + int64(c.size)
	if end > int64(len(data)) {
		return wavChunk{}, fmt.Errorf("%w: WAV %q chunk claims %d bytes, only %d follow", ErrCorrupt, c.id, c.size, len(data)-c.body)
	}
	c.next = min(int(end)+int(c.size&1), len(data)) // chunks are padded to even sizes
	return c, nil
}

// wavDataBody returns the bytes of the data chunk c. Sizes 0 and 0xFFFFFFFF (without an RF64
// size) mean "to the end of the file", as streaming writers emit them.
func wavDataBody(data []byte, c wavChunk, dataSize64 int64) ([]byte, error) {
	rest := int64(len(data) - c.body)
	size := int64(c.size)
	switch {
	case c.size == unknownSize && dataSize64 >= 0:
		size = dataSize64
	case c.size == unknownSize || c.size == 0:
		size = rest
	}
	if size > rest {
		return nil, fmt.Errorf("%w: WAV data chunk claims %d bytes, only %d follow", ErrCorrupt, size, rest)
	}
	return data[c.body : int64(c.body)+size], nil
}

// parseDS64 reads the 64-bit data size from an RF64 ds64 chunk.
func parseDS64(b []byte) (int64, error) {
	if len(b) < 16 {
		return 0, fmt.Errorf("%w: RF64 ds64 chunk is %d bytes, want at least 16", ErrCorrupt, len(b))
	}
	size := binary.LittleEndian.Uint64(b[8:])
	if size > math.MaxInt64 {
		return 0, fmt.Errorf("%w: RF64 data size %d", ErrCorrupt, size)
	}
	return int64(size), nil
}

// parseWAVFormat reads a fmt chunk and checks that this package can convert its samples.
func parseWAVFormat(b []byte) (*wavFormat, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("%w: WAV fmt chunk is %d bytes, want at least 16", ErrCorrupt, len(b))
	}
	tag := binary.LittleEndian.Uint16(b)
	channels := int(binary.LittleEndian.Uint16(b[2:]))
	f := &wavFormat{channels: channels, rate: int(binary.LittleEndian.Uint32(b[4:]))}
	blockAlign := int(binary.LittleEndian.Uint16(b[12:]))
	bits := int(binary.LittleEndian.Uint16(b[14:]))
	if tag == waveExtensible {
		if len(b) < 26 {
			return nil, fmt.Errorf("%w: WAV extensible fmt chunk is %d bytes, want 40", ErrCorrupt, len(b))
		}
		tag = binary.LittleEndian.Uint16(b[24:]) // first bytes of the sub-format GUID
	}
	switch tag {
	case wavePCM:
	case waveFloat:
		f.float = true
	default:
		return nil, fmt.Errorf("%w: WAV codec 0x%04x (WAV must hold PCM or IEEE float samples); %s", ErrUnsupported, tag, decodable)
	}
	if err := checkShape("WAV", f.rate, channels); err != nil {
		return nil, err
	}
	if blockAlign == 0 || blockAlign%channels != 0 {
		return nil, fmt.Errorf("%w: WAV block align %d does not fit %d channels", ErrCorrupt, blockAlign, channels)
	}
	f.width = blockAlign / channels
	return f, checkWAVWidth(f, bits)
}

// checkWAVWidth accepts 8-bit unsigned, 16/24/32-bit signed (holding at most that many valid
// bits, like 12 in 16 or 20 in 24) and 32/64-bit float samples.
func checkWAVWidth(f *wavFormat, bits int) error {
	kind := "integer"
	if f.float {
		kind = "float"
	}
	ok := bits > 0 && bits <= 8*f.width
	if f.float {
		ok = ok && (f.width == 4 || f.width == 8) && bits == 8*f.width
	} else {
		ok = ok && f.width <= 4
	}
	if !ok {
		return fmt.Errorf("%w: WAV with %d-bit %s samples in %d bytes; WAV may hold 8-bit unsigned, 16, 24 or 32-bit signed, or 32 or 64-bit float samples", ErrUnsupported, bits, kind, f.width)
	}
	return nil
}

// wavSamples converts the body of a data chunk; a partial last frame is dropped.
func (d Decoder) wavSamples(f wavFormat, body []byte) (Audio, error) {
	n := len(body) / (f.width * f.channels) * f.channels
	if err := d.limit(f.rate, f.channels).check(n); err != nil {
		return Audio{}, err
	}
	out := make([]float32, n)
	convert := wavConverter(f)
	for i := range out {
		out[i] = convert(body[i*f.width:])
	}
	return Audio{Rate: f.rate, Channels: f.channels, Samples: out}, nil
}

// wavConverter returns the function that reads one sample of format f from the start of b.
func wavConverter(f wavFormat) func(b []byte) float32 {
	le := binary.LittleEndian
	switch {
	case f.float && f.width == 4:
		return func(b []byte) float32 { return clampSample(float64(math.Float32frombits(le.Uint32(b)))) }
	case f.float:
		return func(b []byte) float32 { return clampSample(math.Float64frombits(le.Uint64(b))) }
	case f.width == 1:
		return func(b []byte) float32 { return float32(int(b[0])-128) / 128 }
	case f.width == 2:
		return func(b []byte) float32 { return float32(int16(le.Uint16(b))) / (1 << 15) }
	case f.width == 3:
		return func(b []byte) float32 {
			v := int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24) >> 8
			return float32(v) / (1 << 23)
		}
	}
	return func(b []byte) float32 { return float32(float64(int32(le.Uint32(b))) / (1 << 31)) }
}
