package audio_test

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/internal/audio"
)

// TestDecodeWAVSampleFormats writes one file per sample format WAV may hold and checks every
// value decodes to v / 2^(bits-1) (float clamped, NaN to 0).
func TestDecodeWAVSampleFormats(t *testing.T) {
	le := binary.LittleEndian
	ints := func(width int, vals ...int64) []byte {
		var b []byte
		for _, v := range vals {
			b = append(b, le.AppendUint64(nil, uint64(v))[:width]...)
		}
		return b
	}
	floats32 := func(vals ...float32) (b []byte) {
		for _, v := range vals {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
		return b
	}
	floats64 := func(vals ...float64) (b []byte) {
		for _, v := range vals {
			b = le.AppendUint64(b, math.Float64bits(v))
		}
		return b
	}
	scaled := func(bits int, vals ...int64) (out []float32) {
		for _, v := range vals {
			out = append(out, float32(float64(v)/math.Exp2(float64(bits-1))))
		}
		return out
	}
	s24 := []int64{-1 << 23, -1, 0, 123456, 1<<23 - 1}
	s32 := []int64{math.MinInt32, -1, 0, 1 << 30, math.MaxInt32}
	shifted := func(vals []int64, by int) (out []int64) {
		for _, v := range vals {
			out = append(out, v<<by)
		}
		return out
	}
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name     string
		fmt      []byte
		data     []byte
		channels int
		want     []float32
	}{
		{"8-bit unsigned", fmtChunk(1, 1, 8000, 8, 1), []byte{0, 64, 128, 255}, 1, []float32{-1, -0.5, 0, 127.0 / 128}},
		{"16-bit", fmtChunk(1, 1, 16000, 16, 2), ints(2, -32768, -1, 0, 1, 32767), 1, scaled(16, -32768, -1, 0, 1, 32767)},
		{"16-bit stereo", fmtChunk(1, 2, 44100, 16, 4), ints(2, -32768, 32767, 100, -100), 2, scaled(16, -32768, 32767, 100, -100)},
		{"12-bit in 16", fmtChunk(1, 1, 16000, 12, 2), ints(2, shifted([]int64{-2048, 5, 2047}, 4)...), 1, scaled(12, -2048, 5, 2047)},
		{"24-bit", fmtChunk(1, 1, 48000, 24, 3), ints(3, s24...), 1, scaled(24, s24...)},
		{"32-bit", fmtChunk(1, 1, 48000, 32, 4), ints(4, s32...), 1, scaled(32, s32...)},
		{"float32", fmtChunk(3, 1, 24000, 32, 4), floats32(-1, -0.25, 0, 0.5, 1.5, nan), 1, []float32{-1, -0.25, 0, 0.5, 1, 0}},
		{"float64", fmtChunk(3, 1, 22050, 64, 8), floats64(-2, -0.125, 0, 0.75, 1), 1, []float32{-1, -0.125, 0, 0.75, 1}},
		{"extensible 24 in 32", extensibleFmt(1, 1, 16000, 32, 24), ints(4, shifted(s24, 8)...), 1, scaled(24, s24...)},
		{"extensible 16-bit stereo", extensibleFmt(1, 2, 16000, 16, 16), ints(2, 1, 2, 3, 4), 2, scaled(16, 1, 2, 3, 4)},
		{"extensible float", extensibleFmt(3, 1, 16000, 32, 32), floats32(0.5, -0.5), 1, []float32{0.5, -0.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustDecode(t, riff(tc.fmt, chunk("data", tc.data)))
			if a.Channels != tc.channels {
				t.Errorf("%d channels; want %d", a.Channels, tc.channels)
			}
			equalSamples(t, a.Samples, tc.want, 1e-7)
		})
	}
}

// TestDecodeWAVLayouts covers the chunk layouts real writers produce: streaming sizes, RF64,
// chunks before and after the data, odd-sized chunks.
func TestDecodeWAVLayouts(t *testing.T) {
	samples := sine(16000, 440, 0.5, 0.01)
	pcm := s16(samples)
	fmt16 := fmtChunk(1, 1, 16000, 16, 2)
	withSize := func(size uint32) []byte {
		b := riff(fmt16, chunk("data", pcm))
		binary.LittleEndian.PutUint32(b[len(b)-len(pcm)-4:], size)
		return b
	}
	ds64 := binary.LittleEndian.AppendUint64(make([]byte, 8), uint64(len(pcm)))
	ds64 = append(ds64, make([]byte, 12)...) // sample count, table length
	rf64 := riff(chunk("ds64", ds64), fmt16, chunk("data", pcm), chunk("LIST", []byte("trailer")))
	copy(rf64, "RF64")
	binary.LittleEndian.PutUint32(rf64[4:], 0xffffffff)
	binary.LittleEndian.PutUint32(rf64[12+8+len(ds64)+len(fmt16)+4:], 0xffffffff)
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"exact sizes", wav16(16000, samples)},
		{"data size 0xFFFFFFFF", withSize(0xffffffff)},
		{"data size 0", withSize(0)},
		{"odd chunk before fmt", riff(chunk("LIST", []byte("odd")), fmt16, chunk("data", pcm))},
		{"chunks between fmt and data", riff(fmt16, chunk("fact", make([]byte, 4)), chunk("PEAK", make([]byte, 9)), chunk("data", pcm))},
		{"chunk after data", riff(fmt16, chunk("data", pcm), chunk("id3 ", []byte("tag")))},
		{"RF64", rf64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustDecode(t, tc.file)
			if a.Rate != 16000 || a.Channels != 1 {
				t.Fatalf("%d Hz, %d channels; want 16000 Hz mono", a.Rate, a.Channels)
			}
			equalSamples(t, a.Samples, quantize16(samples), 0)
		})
	}
}

// TestDecodeWAVFixtures decodes real speech recordings.
func TestDecodeWAVFixtures(t *testing.T) {
	path := fixture(t, "/usr/share/pocketsphinx/test/data/librivox/*.wav", "pocketsphinx-testdata")
	data := readFile(t, path)
	a := mustDecode(t, data)
	if a.Rate != 16000 || a.Channels != 1 {
		t.Fatalf("%s: %d Hz, %d channels; want 16000 Hz mono", path, a.Rate, a.Channels)
	}
	if got, want := len(a.Samples), (len(data)-44)/2; got < want-64 || got > want {
		t.Errorf("%d samples; the file holds about %d", got, want)
	}
	if r := rms(a.Samples); r < 0.005 || r > 0.5 {
		t.Errorf("speech has RMS %v", r)
	}
}

// TestDecodeRaw decodes headerless s16le, including real speech.
func TestDecodeRaw(t *testing.T) {
	samples := quantize16(sine(16000, 300, 0.3, 0.05))
	a, err := audio.DecodeRaw(s16(samples), 16000, 1)
	if err != nil {
		t.Fatal(err)
	}
	equalSamples(t, a.Samples, samples, 0)

	_, err = audio.DecodeRaw([]byte{1, 2, 3}, 16000, 1)
	wantErr(t, err, audio.ErrCorrupt)
	_, err = audio.DecodeRaw(make([]byte, 4), 16000, 0)
	wantErr(t, err, audio.ErrUnsupported)
	_, err = audio.Decoder{MaxDuration: time.Second}.DecodeRaw(make([]byte, 2*16001), 16000, 1)
	wantErr(t, err, audio.ErrTooLong)

	path := fixture(t, "/usr/share/pocketsphinx/test/data/goforward.raw", "pocketsphinx-testdata")
	data := readFile(t, path)
	a, err = audio.DecodeRaw(data, 16000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(len(data)/2) * time.Second / 16000; a.Duration() != want {
		t.Errorf("duration %v; want %v", a.Duration(), want)
	}
}

// TestDecodeWAVRejects checks that malformed and unsupported WAV files fail with the right
// sentinel and a message naming the problem.
func TestDecodeWAVRejects(t *testing.T) {
	pcm := make([]byte, 64)
	fmt16 := fmtChunk(1, 1, 16000, 16, 2)
	huge := riff(fmt16, chunk("data", pcm))
	binary.LittleEndian.PutUint32(huge[len(huge)-len(pcm)-4:], 0x7ffffff0)
	for _, tc := range []struct {
		name, file string
		want       error
		mentions   string
	}{
		{"RIFF only", "RIFF", audio.ErrCorrupt, "truncated"},
		{"no chunks", string(riff()), audio.ErrCorrupt, "no data chunk"},
		{"fmt truncated", string(riff(fmt16[:20])), audio.ErrCorrupt, "fmt"},
		{"data before fmt", string(riff(chunk("data", pcm), fmt16)), audio.ErrCorrupt, "before the fmt"},
		{"data claims 2 GB", string(huge), audio.ErrCorrupt, "claims"},
		{"block align 0", string(riff(fmtChunk(1, 1, 16000, 16, 0), chunk("data", pcm))), audio.ErrCorrupt, "block align"},
		{"64-bit integers", string(riff(fmtChunk(1, 1, 16000, 64, 8), chunk("data", pcm))), audio.ErrUnsupported, "64-bit integer"},
		{"16-bit float", string(riff(fmtChunk(3, 1, 16000, 16, 2), chunk("data", pcm))), audio.ErrUnsupported, "16-bit float"},
		{"ADPCM", string(riff(fmtChunk(2, 1, 16000, 4, 256), chunk("data", pcm))), audio.ErrUnsupported, "codec 0x0002"},
		{"rate 0", string(riff(fmtChunk(1, 1, 0, 16, 2), chunk("data", pcm))), audio.ErrUnsupported, "0 Hz"},
		{"no channels", string(riff(fmtChunk(1, 0, 16000, 16, 2), chunk("data", pcm))), audio.ErrUnsupported, "0 channels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if n := allocated(func() { _, err = audio.Decode([]byte(tc.file)) }); n > 1<<20 {
				t.Errorf("allocated %d bytes for a %d-byte file", n, len(tc.file))
			}
			wantErr(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %q does not mention %q", err, tc.mentions)
			}
		})
	}
}

// TestDecodeLimit checks that MaxDuration stops decoding with ErrTooLong, and lets shorter
// audio through.
func TestDecodeLimit(t *testing.T) {
	file := wav16(16000, make([]float32, 32000))
	for _, tc := range []struct {
		limit time.Duration
		want  error
	}{
		{0, nil},
		{3 * time.Second, nil},
		{2 * time.Second, nil},
		{1999 * time.Millisecond, audio.ErrTooLong},
		{time.Second, audio.ErrTooLong},
	} {
		a, err := audio.Decoder{MaxDuration: tc.limit}.Decode(file)
		if tc.want == nil && (err != nil || a.Duration() != 2*time.Second) {
			t.Errorf("limit %v: %v, %v; want 2s of audio", tc.limit, a.Duration(), err)
		}
		if tc.want != nil {
			wantErr(t, err, tc.want)
		}
	}
}

// TestDecodeSampleLimit checks that MaxSamples bounds the samples of all channels together.
func TestDecodeSampleLimit(t *testing.T) {
	stereo := riff(fmtChunk(1, 2, 16000, 16, 4), chunk("data", make([]byte, 4*1000)))
	if _, err := (audio.Decoder{MaxSamples: 2000}).Decode(stereo); err != nil {
		t.Errorf("2000 samples under a limit of 2000: %v", err)
	}
	_, err := audio.Decoder{MaxSamples: 1999, MaxDuration: time.Hour}.Decode(stereo)
	wantErr(t, err, audio.ErrTooLong)
	if !strings.Contains(err.Error(), "1999 samples") {
		t.Errorf("error %q does not state the sample limit", err)
	}
}

// TestAudioMonoAndDuration checks channel averaging and the duration of odd lengths.
func TestAudioMonoAndDuration(t *testing.T) {
	stereo := audio.Audio{Rate: 8000, Channels: 2, Samples: []float32{1, 0, 0.5, -0.5, -1, -1}}
	mono := stereo.Mono()
	if mono.Channels != 1 || mono.Rate != 8000 {
		t.Fatalf("Mono: %d channels at %d Hz", mono.Channels, mono.Rate)
	}
	equalSamples(t, mono.Samples, []float32{0.5, 0, -1}, 0)
	if d := mono.Duration(); d != 375*time.Microsecond {
		t.Errorf("3 samples at 8 kHz last %v; want 375µs", d)
	}
	if d := stereo.Duration(); d != 375*time.Microsecond {
		t.Errorf("3 stereo frames at 8 kHz last %v; want 375µs", d)
	}
	long := audio.Audio{Rate: 44100, Channels: 1, Samples: make([]float32, 44100*3+441)}
	if d := long.Duration(); d != 3010*time.Millisecond {
		t.Errorf("duration %v; want 3.01s", d)
	}
}

// TestInt16Conversion checks clamping, rounding and the exact round trip of every int16.
func TestInt16Conversion(t *testing.T) {
	got := audio.ToInt16([]float32{-2, -1, -0.5, 0, 0.5, 1, 2, float32(math.NaN()), 1.0 / 65536 * 1.01})
	want := []int16{-32768, -32768, -16384, 0, 16384, 32767, 32767, 0, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ToInt16 %d: %d; want %d", i, got[i], want[i])
		}
	}
	all := make([]int16, 65536)
	for i := range all {
		all[i] = int16(i - 32768)
	}
	back := audio.ToInt16(audio.FromInt16(all))
	for i := range all {
		if back[i] != all[i] {
			t.Fatalf("round trip of %d gives %d", all[i], back[i])
		}
	}
}
