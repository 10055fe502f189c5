package audio_test

import (
	"bytes"
	"crypto/md5"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mewkiz/flac"
	"github.com/mewkiz/flac/frame"
	"github.com/mewkiz/flac/meta"

	"github.com/ekisa-team/syn4pse/internal/audio"
)

// flacInputs are signals that push the encoder's predictor choice around: silence (constant),
// noise (verbatim), a smooth sweep (high-order fixed), full-scale clipping, and real speech.
func flacInputs(t *testing.T) map[string][]float32 {
	rng := rand.New(rand.NewPCG(3, 4))
	noise := make([]float32, 5000)
	for i := range noise {
		noise[i] = rng.Float32()*2 - 1
	}
	square := make([]float32, 9000)
	for i := range square {
		square[i] = float32(2*((i/40)%2) - 1)
	}
	inputs := map[string][]float32{
		"empty":        nil,
		"one sample":   {0.25},
		"silence":      make([]float32, 4096),
		"noise":        noise,
		"sweep":        chirp(16000, 0.6),
		"square clips": square,
	}
	paths, _ := filepath.Glob("/usr/share/pocketsphinx/test/data/librivox/*.wav")
	if len(paths) > 0 {
		inputs["speech"] = mustDecode(t, readFile(t, paths[0])).Samples
	}
	return inputs
}

// TestEncodeFLACLossless streams signals through the FLAC encoder and checks they decode to
// exactly their 16-bit samples, with mewkiz/flac and, when installed, with flac -t.
func TestEncodeFLACLossless(t *testing.T) {
	for name, samples := range flacInputs(t) {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			encode(t, &buf, "flac", 16000, samples, 1500)
			a := mustDecode(t, buf.Bytes())
			if a.Rate != 16000 || a.Channels != 1 {
				t.Fatalf("%d Hz, %d channels; want 16000 Hz mono", a.Rate, a.Channels)
			}
			equalSamples(t, a.Samples, quantize16(samples), 0)
			if name == "speech" {
				t.Logf("speech: %d bytes of FLAC for %d of PCM", buf.Len(), 2*len(samples))
			}
			path := filepath.Join(t.TempDir(), "out.flac")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			flacCLI(t, path)
		})
	}
}

// TestEncodeFLACStreams checks that a frame reaches the writer as soon as a block is full.
func TestEncodeFLACStreams(t *testing.T) {
	var buf bytes.Buffer
	enc, err := audio.NewEncoder(&buf, "flac", 22050)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Write(chirp(22050, 0.1)); err != nil { // 2205 samples: no frame yet
		t.Fatal(err)
	}
	header := buf.Len()
	if err := enc.Write(chirp(22050, 0.1)); err != nil {
		t.Fatal(err)
	}
	if buf.Len() <= header {
		t.Errorf("no frame written after %d samples", 4410)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if a := mustDecode(t, buf.Bytes()); a.Rate != 22050 || len(a.Samples) != 4410 {
		t.Errorf("%d samples at %d Hz; want 4410 at 22050", len(a.Samples), a.Rate)
	}
}

// TestEncodeFLACToFileStatesLength checks that a seekable writer gets the sample count and MD5
// in STREAMINFO (flac -t verifies the MD5).
func TestEncodeFLACToFileStatesLength(t *testing.T) {
	samples := chirp(24000, 0.5)
	path := filepath.Join(t.TempDir(), "out.flac")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	encode(t, f, "flac", 24000, samples, 3000)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	stream, err := flac.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if stream.Info.NSamples != uint64(len(samples)) {
		t.Errorf("STREAMINFO states %d samples; want %d", stream.Info.NSamples, len(samples))
	}
	if stream.Info.MD5sum != md5.Sum(s16(samples)) {
		t.Errorf("STREAMINFO MD5 %x; want that of the samples", stream.Info.MD5sum)
	}
	equalSamples(t, mustDecode(t, readFile(t, path)).Samples, quantize16(samples), 0)
	flacCLI(t, path)
}

// flacFile encodes channels of int samples at bits per sample with mewkiz/flac, one frame, with
// the given inter-channel decorrelation.
func flacFile(t *testing.T, bits int, assignment frame.Channels, channels ...[]int32) []byte {
	t.Helper()
	var buf bytes.Buffer
	info := &meta.StreamInfo{BlockSizeMin: 16, BlockSizeMax: 4096, SampleRate: 48000, NChannels: uint8(len(channels)), BitsPerSample: uint8(bits), NSamples: uint64(len(channels[0]))}
	enc, err := flac.NewEncoder(&buf, info)
	if err != nil {
		t.Fatal(err)
	}
	f := &frame.Frame{Header: frame.Header{HasFixedBlockSize: true, BlockSize: uint16(len(channels[0])), SampleRate: 48000, Channels: assignment, BitsPerSample: uint8(bits)}}
	for _, c := range channels {
		f.Subframes = append(f.Subframes, &frame.Subframe{SubHeader: frame.SubHeader{Pred: frame.PredVerbatim}, Samples: c, NSamples: len(c)})
	}
	if err := enc.WriteFrame(f); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestDecodeFLACDepthsAndChannels decodes FLAC of other depths and channel layouts than the
// encoder writes, checking v / 2^(bits-1) and channel order.
func TestDecodeFLACDepthsAndChannels(t *testing.T) {
	left := []int32{-8388608, -1, 0, 1, 8388607, 4000000, -4000000, 12345, 0, 0, 0, 0, 0, 0, 0, 0}
	right := []int32{8388607, 0, -5, 7, -8388608, 100, 200, -300, 0, 0, 0, 0, 0, 0, 0, 1}
	small := []int32{-128, -64, 0, 64, 127, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	third := []int32{-2048, 2047, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}
	interleave := func(bits int, chans ...[]int32) (out []float32) {
		for i := range chans[0] {
			for _, c := range chans {
				out = append(out, float32(float64(c[i])/float64(int64(1)<<(bits-1))))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		bits     int
		layout   frame.Channels
		channels [][]int32
	}{
		{"24-bit stereo", 24, frame.ChannelsLR, [][]int32{left, right}},
		{"24-bit left/side", 24, frame.ChannelsLeftSide, [][]int32{left, right}},
		{"24-bit mid/side", 24, frame.ChannelsMidSide, [][]int32{left, right}},
		{"8-bit mono", 8, frame.ChannelsMono, [][]int32{small}},
		{"12-bit three channels", 12, frame.ChannelsLRC, [][]int32{third, small, third}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustDecode(t, flacFile(t, tc.bits, tc.layout, tc.channels...))
			if a.Rate != 48000 || a.Channels != len(tc.channels) {
				t.Fatalf("%d Hz, %d channels; want 48000 Hz, %d", a.Rate, a.Channels, len(tc.channels))
			}
			equalSamples(t, a.Samples, interleave(tc.bits, tc.channels...), 0)
		})
	}
}

// TestDecodeFLACFromReferenceEncoder decodes what the reference encoder makes of real speech
// (LPC subframes, partitioned Rice codes), which must equal the WAV it came from.
func TestDecodeFLACFromReferenceEncoder(t *testing.T) {
	needProgram(t, "flac", "flac")
	wav := fixture(t, "/usr/share/pocketsphinx/test/data/librivox/*.wav", "pocketsphinx-testdata")
	out := filepath.Join(t.TempDir(), "speech.flac")
	if b, err := exec.CommandContext(t.Context(), "flac", "-s", "-8", "-o", out, wav).CombinedOutput(); err != nil {
		t.Fatalf("flac: %v: %s", err, b)
	}
	want := mustDecode(t, readFile(t, wav))
	got := mustDecode(t, readFile(t, out))
	if got.Rate != want.Rate {
		t.Errorf("rate %d; want %d", got.Rate, want.Rate)
	}
	equalSamples(t, got.Samples, want.Samples, 0)
}

// TestDecodeFLACRejects checks truncated, damaged and lying FLAC streams.
func TestDecodeFLACRejects(t *testing.T) {
	var good bytes.Buffer
	encode(t, &good, "flac", 16000, chirp(16000, 1), 16000)
	data := good.Bytes()
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x55
	lying := flacFile(t, 16, frame.ChannelsMono, make([]int32, 16))
	lying[21] |= 0x0f // STREAMINFO total samples (36 bits from here): about 2^36
	lying[22], lying[23], lying[24], lying[25] = 0xff, 0xff, 0xff, 0xff
	for _, tc := range []struct {
		name string
		file []byte
		want error
	}{
		{"signature only", []byte("fLaC"), audio.ErrCorrupt},
		{"header cut", data[:30], audio.ErrCorrupt},
		{"cut mid-frame", data[:len(data)/2], audio.ErrCorrupt},
		{"flipped byte", flipped, audio.ErrCorrupt},
		{"claims 2^36 samples", lying, audio.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if n := allocated(func() { _, err = audio.Decode(tc.file) }); n > 8<<20 {
				t.Errorf("allocated %d bytes for a %d-byte file", n, len(tc.file))
			}
			wantErr(t, err, tc.want)
		})
	}
}

// TestDecodeFLACLimitStopsEarly checks that a tiny file expanding to minutes of silence stops
// at the limit instead of allocating the minutes.
func TestDecodeFLACLimitStopsEarly(t *testing.T) {
	var buf bytes.Buffer
	enc, err := audio.NewEncoder(&buf, "flac", 16000)
	if err != nil {
		t.Fatal(err)
	}
	silence := make([]float32, 16000)
	for range 120 { // two minutes
		if err := enc.Write(silence); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("2 minutes of silence: %d bytes of FLAC", buf.Len())
	var decErr error
	n := allocated(func() { _, decErr = audio.Decoder{MaxDuration: time.Second}.Decode(buf.Bytes()) })
	wantErr(t, decErr, audio.ErrTooLong)
	if n > 1<<20 {
		t.Errorf("allocated %d bytes to reject it", n)
	}
}

// BenchmarkEncodeFLAC measures encoding 60 s of 24 kHz speech-like audio, reporting how many
// times faster than real time it runs.
func BenchmarkEncodeFLAC(b *testing.B) {
	samples := chirp(24000, 60)
	start := time.Now()
	for b.Loop() {
		var buf bytes.Buffer
		encode(b, &buf, "flac", 24000, samples, 4800)
	}
	b.ReportMetric(60*float64(b.N)/time.Since(start).Seconds(), "x_realtime")
}
