package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/hajimehoshi/go-mp3"
)

// mp3Header is what decoding needs from an MPEG audio layer III frame header.
type mp3Header struct {
	mpeg1     bool
	mpeg25    bool // the 8, 11.025 and 12 kHz extension, which go-mp3 does not decode
	mono      bool
	crc       bool
	rate      int
	frameSize int // bytes, header included
}

// mp3Bitrates are the layer III bitrates in kbit/s by index, for MPEG-1 and MPEG-2/2.5.
var mp3Bitrates = [2][15]int{
	{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320},
	{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
}

// parseMP3Header parses the layer III frame header at the start of b.
func parseMP3Header(b []byte) (mp3Header, bool) {
	if len(b) < 4 || b[0] != 0xff || b[1]&0xe0 != 0xe0 {
		return mp3Header{}, false
	}
	version, layer := (b[1]>>3)&3, (b[1]>>1)&3 // version 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
	bitrateIndex, rateIndex := int(b[2]>>4), int(b[2]>>2)&3
	if version == 1 || layer != 1 || bitrateIndex == 0 || bitrateIndex == 15 || rateIndex == 3 {
		return mp3Header{}, false
	}
	h := mp3Header{mpeg1: version == 3, mpeg25: version == 0, mono: b[3]>>6 == 3, crc: b[1]&1 == 0}
	h.rate = [3]int{44100, 48000, 32000}[rateIndex] >> [4]int{2, 0, 1, 0}[version]
	padding := int(b[2]>>1) & 1
	if h.mpeg1 {
		h.frameSize = 144*1000*mp3Bitrates[0][bitrateIndex]/h.rate + padding
	} else {
		h.frameSize = 72*1000*mp3Bitrates[1][bitrateIndex]/h.rate + padding
	}
	return h, true
}

// samplesPerFrame is the number of samples per channel each frame decodes to.
func (h mp3Header) samplesPerFrame() int {
	if h.mpeg1 {
		return 1152
	}
	return 576
}

// sideInfoSize is the size of the side information that follows the header (and its CRC).
func (h mp3Header) sideInfoSize() int {
	size := 17
	switch {
	case h.mpeg1 && !h.mono:
		size = 32
	case !h.mpeg1 && h.mono:
		size = 9
	}
	return size
}

// isMP3 reports whether b starts with an MP3 frame followed by another one (or the end).
func isMP3(b []byte) bool {
	h, ok := parseMP3Header(b)
	if !ok {
		return false
	}
	if h.frameSize >= len(b) {
		return true
	}
	_, ok = parseMP3Header(b[h.frameSize:])
	return ok
}

// skipID3v2 returns data after any ID3v2 tags at its start.
func skipID3v2(data []byte) ([]byte, error) {
	for len(data) >= 3 && string(data[:3]) == "ID3" {
		if len(data) < 10 {
			return nil, fmt.Errorf("%w: ID3 tag header truncated", ErrCorrupt)
		}
		size := int(data[6]&0x7f)<<21 | int(data[7]&0x7f)<<14 | int(data[8]&0x7f)<<7 | int(data[9]&0x7f)
		size += 10
		if data[5]&0x10 != 0 {
			size += 10 // footer
		}
		if size > len(data) {
			return nil, fmt.Errorf("%w: ID3 tag claims %d bytes, only %d follow", ErrCorrupt, size, len(data))
		}
		data = data[size:]
	}
	return data, nil
}

// firstMP3Frame finds the first frame: at the start, or past padding some taggers leave after
// an ID3 tag (looked for in the first 64 KiB only).
func firstMP3Frame(b []byte) (int, mp3Header, error) {
	for off := 0; off < min(len(b), 64<<10); off++ {
		if isMP3(b[off:]) {
			h, _ := parseMP3Header(b[off:])
			return off, h, nil
		}
	}
	return 0, mp3Header{}, fmt.Errorf("%w: ID3 tag not followed by MP3 frames; %s", ErrUnsupported, decodable)
}

// mp3Gap is how many decoded samples per channel to drop at each end for gapless playback.
type mp3Gap struct{ head, tail int }

// lameDecoderDelay is the delay of the MP3 synthesis filter bank, which LAME's delay omits.
const lameDecoderDelay = 529

// readMP3Gap reads the Xing/Info or VBRI frame encoders put first: a silent frame that says how
// much padding the encoder added. Without one, nothing is trimmed.
func readMP3Gap(frame []byte, h mp3Header) mp3Gap {
	off := 4 + h.sideInfoSize()
	if h.crc {
		off += 2
	}
	if len(frame) >= 40 && string(frame[36:40]) == "VBRI" {
		return mp3Gap{head: h.samplesPerFrame()}
	}
	if len(frame) < off+8 || (string(frame[off:off+4]) != "Xing" && string(frame[off:off+4]) != "Info") {
		return mp3Gap{}
	}
	gap := mp3Gap{head: h.samplesPerFrame()}
	flags := binary.BigEndian.Uint32(frame[off+4:])
	lame := off + 8
	for bit, size := range []int{4, 4, 100, 4} { // frames, bytes, TOC, quality
		if flags&(1<<bit) != 0 {
			lame += size
		}
	}
	if len(frame) < lame+24 || !slices.Contains([]string{"LAME", "Lavf", "Lavc"}, string(frame[lame:lame+4])) {
		return gap // no encoder tag (LAME's, or FFmpeg's in its format): no delay stated
	}
	delay := int(frame[lame+21])<<4 | int(frame[lame+22])>>4
	padding := int(frame[lame+22]&0x0f)<<8 | int(frame[lame+23])
	gap.head += delay + lameDecoderDelay
	gap.tail = max(padding-lameDecoderDelay, 0)
	return gap
}

// decodeMP3 decodes MPEG layer III audio (data after any ID3v2 tag) with go-mp3, trimming the
// encoder's padding when an Info frame states it.
func (d Decoder) decodeMP3(data []byte) (Audio, error) {
	off, h, err := firstMP3Frame(data)
	if err != nil {
		return Audio{}, err
	}
	data = data[off:]
	if len(data) >= 128 && string(data[len(data)-128:len(data)-125]) == "TAG" {
		data = data[:len(data)-128] // an ID3v1 tag would be read as garbage frames
	}
	if h.mpeg25 {
		return Audio{}, fmt.Errorf("%w: MP3 at %d Hz (MPEG-2.5); MP3 at 16 to 48 kHz is supported, or %s", ErrUnsupported, h.rate, decodable)
	}
	channels := 2
	if h.mono {
		channels = 1
	}
	if err := checkShape("MP3", h.rate, channels); err != nil {
		return Audio{}, err
	}
	gap := readMP3Gap(data[:min(h.frameSize, len(data))], h)
	samples, err := d.readMP3(data, h.rate, channels, gap.head)
	if err != nil {
		return Audio{}, err
	}
	samples = samples[:max(len(samples)-gap.tail*channels, 0)]
	return Audio{Rate: h.rate, Channels: channels, Samples: samples}, nil
}

// readMP3 runs go-mp3 (which always yields 16-bit stereo) over data, keeping channels of it
// and skipping the first skip frames.
func (d Decoder) readMP3(data []byte, rate, channels, skip int) ([]float32, error) {
	// A plain reader (no Seek) keeps go-mp3 from scanning the whole stream up front.
	dec, err := mp3.NewDecoder(struct{ io.Reader }{bytes.NewReader(data)})
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: MP3 holds no complete frame", ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: MP3: %v", ErrCorrupt, err)
	}
	lim := d.limit(rate, channels)
	out := make([]float32, 0, lim.capHint(int64(len(data))*4, len(data), 4))
	buf := make([]byte, 4*4096)
	for frame := 0; ; {
		n, err := io.ReadFull(dec, buf)
		for i := 0; i+4 <= n; i, frame = i+4, frame+1 {
			if frame < skip {
				continue
			}
			for c := range channels {
				out = append(out, float32(int16(binary.LittleEndian.Uint16(buf[i+2*c:])))/32768)
			}
		}
		if err := lim.check(len(out)); err != nil {
			return nil, err
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: MP3: %v", ErrCorrupt, err)
		}
	}
}
