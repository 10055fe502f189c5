package audio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/internal/audio"
)

// TestEncodeWAVAndPCMStream checks the uncompressed encoders: streamed output decodes to the
// 16-bit samples, and bytes reach the writer on the first Write.
func TestEncodeWAVAndPCMStream(t *testing.T) {
	samples := sine(24000, 440, 0.8, 0.3)
	for _, format := range []string{"wav", "pcm"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			enc, err := audio.NewEncoder(&buf, format, 24000)
			if err != nil {
				t.Fatal(err)
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes written before the first Write", buf.Len())
			}
			if err := enc.Write(samples[:100]); err != nil {
				t.Fatal(err)
			}
			if buf.Len() < 200 {
				t.Errorf("%d bytes written after 100 samples; the stream must not wait for Close", buf.Len())
			}
			if err := enc.Write(samples[100:]); err != nil {
				t.Fatal(err)
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			if err := enc.Write(samples); err == nil {
				t.Error("Write after Close succeeded")
			}
			var a audio.Audio
			if format == "wav" {
				if size := binary.LittleEndian.Uint32(buf.Bytes()[40:]); size != 0xffffffff {
					t.Errorf("streamed WAV states data size %#x; want 0xFFFFFFFF", size)
				}
				a = mustDecode(t, buf.Bytes())
			} else {
				a, err = audio.DecodeRaw(buf.Bytes(), 24000, 1)
				if err != nil {
					t.Fatal(err)
				}
			}
			if a.Rate != 24000 {
				t.Errorf("rate %d; want 24000", a.Rate)
			}
			equalSamples(t, a.Samples, quantize16(samples), 0)
		})
	}
}

// TestEncodeWAVToFileFixesSizes checks that a seekable writer gets exact RIFF and data sizes,
// and that the file offset is left at the end.
func TestEncodeWAVToFileFixesSizes(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out.wav"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.WriteString("junk") // the header goes where the file offset is
	samples := sine(16000, 300, 0.5, 0.25)
	encode(t, f, "wav", 16000, samples, 999)
	if _, err := f.WriteString("more"); err != nil {
		t.Fatal(err)
	}
	data := readFile(t, f.Name())
	wav := data[4 : len(data)-4]
	le := binary.LittleEndian
	if got, want := le.Uint32(wav[4:]), uint32(len(wav)-8); got != want {
		t.Errorf("RIFF size %d; want %d", got, want)
	}
	if got, want := le.Uint32(wav[40:]), uint32(2*len(samples)); got != want {
		t.Errorf("data size %d; want %d", got, want)
	}
	equalSamples(t, mustDecode(t, wav).Samples, quantize16(samples), 0)
}

// TestEncoderFormats checks the format list, MIME types, and the errors for unknown formats,
// bad rates and missing encoder programs.
func TestEncoderFormats(t *testing.T) {
	for format, want := range map[string]string{
		"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg",
		"opus": "audio/ogg", "MP3": "audio/mpeg", "aac": "application/octet-stream",
	} {
		if got := audio.ContentType(format); got != want {
			t.Errorf("ContentType(%q) = %q; want %q", format, got, want)
		}
	}
	if got := audio.Formats(); !slices.Equal(got[:3], []string{"wav", "pcm", "flac"}) {
		t.Errorf("Formats() = %v; want wav, pcm, flac first", got)
	}
	_, err := audio.NewEncoder(&bytes.Buffer{}, "aac", 16000)
	wantErr(t, err, audio.ErrUnsupported)
	if !strings.Contains(err.Error(), "wav, pcm, flac, mp3 or opus") {
		t.Errorf("error %q does not name the supported formats", err)
	}
	if _, err := audio.NewEncoder(&bytes.Buffer{}, "wav", 0); err == nil {
		t.Error("rate 0 accepted")
	}

	t.Setenv("PATH", t.TempDir())
	if got := audio.Formats(); !slices.Equal(got, []string{"wav", "pcm", "flac"}) {
		t.Errorf("Formats() without encoder programs = %v", got)
	}
	for format, pkg := range map[string]string{"mp3": "lame", "opus": "opus-tools"} {
		_, err := audio.NewEncoder(&bytes.Buffer{}, format, 16000)
		wantErr(t, err, audio.ErrEncoderMissing)
		if !strings.Contains(err.Error(), "apt-get install "+pkg) {
			t.Errorf("error %q does not name the package %s", err, pkg)
		}
	}
}

// chirp is a sweep from 200 Hz to 3 kHz: unlike a sine it lines up with itself at one lag only.
func chirp(rate int, seconds float64) []float32 {
	out := make([]float32, int(seconds*float64(rate)))
	for i := range out {
		t := float64(i) / float64(rate)
		out[i] = float32(0.5 * math.Sin(2*math.Pi*(200*t+1400*t*t/seconds)))
	}
	return out
}

// mp3FrameSamples is the samples per channel of an MP3 frame at rate.
func mp3FrameSamples(rate int) int {
	if rate < 32000 {
		return 576
	}
	return 1152
}

// checkMP3 decodes an MP3 of want at rate and checks its length against want plus the leading
// delay (0 when the file states it), and that the waveform and its energy survive.
func checkMP3(t *testing.T, data []byte, rate int, want []float32, delay int) {
	t.Helper()
	a := mustDecode(t, data)
	if a.Rate != rate || a.Channels != 1 {
		t.Fatalf("%d Hz MP3 decodes to %d Hz, %d channels", rate, a.Rate, a.Channels)
	}
	frame := mp3FrameSamples(rate)
	if extra := len(a.Samples) - len(want) - delay; extra < -frame || extra > frame {
		t.Errorf("%d Hz: %d samples decoded; want %d + %d within a frame", rate, len(a.Samples), len(want), delay)
	}
	lag, corr := bestLag(want, a.Samples, delay+frame)
	t.Logf("%d Hz: %d bytes, %d samples for %d, correlation %0.4f at lag %d", rate, len(data), len(a.Samples), len(want), corr, lag)
	if corr < 0.99 || lag < delay-2 || lag > delay+2 {
		t.Errorf("%d Hz: correlation %0.3f at lag %d; want > 0.99 at lag %d", rate, corr, lag, delay)
	}
	aligned := a.Samples[lag:min(len(a.Samples), lag+len(want))]
	if r := rms(aligned) / rms(want[:len(aligned)]); r < 0.9 || r > 1.1 {
		t.Errorf("%d Hz: decoded energy is %0.2f of the original", rate, r)
	}
}

// TestEncodeMP3 streams a chirp through lame and decodes it with go-mp3. A stream cannot carry
// lame's Info frame, so the audio starts after lame's and the decoder's delay.
func TestEncodeMP3(t *testing.T) {
	needProgram(t, "lame", "lame")
	const lameDelay = 576 + 529
	for _, rate := range []int{16000, 24000, 44100} {
		samples := chirp(rate, 1)
		checkMP3(t, encodeBytes(t, "mp3", rate, samples), rate, samples, lameDelay)
	}
	// lame writes 8 kHz as MPEG-2.5, which clients play but go-mp3 cannot decode.
	_, err := audio.Decode(encodeBytes(t, "mp3", 8000, chirp(8000, 0.2)))
	wantErr(t, err, audio.ErrUnsupported)
	if !strings.Contains(err.Error(), "MPEG-2.5") {
		t.Errorf("error %q does not name MPEG-2.5", err)
	}
}

// TestDecodeMP3Gapless decodes files lame wrote itself, with an Info frame stating its delay and
// padding: the decoded audio must line up with the original, sample for sample in length.
func TestDecodeMP3Gapless(t *testing.T) {
	needProgram(t, "lame", "lame")
	for _, rate := range []int{16000, 22050, 48000} {
		samples := chirp(rate, 1)
		raw, out := filepath.Join(t.TempDir(), "in.raw"), filepath.Join(t.TempDir(), "out.mp3")
		if err := os.WriteFile(raw, s16(samples), 0o644); err != nil {
			t.Fatal(err)
		}
		kHz := strconv.FormatFloat(float64(rate)/1000, 'f', -1, 64)
		cmd := exec.CommandContext(t.Context(), "lame", "--quiet", "-r", "-s", kHz, "--signed", "--little-endian", "-m", "m", "-b", "64", raw, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("lame: %v: %s", err, b)
		}
		data := readFile(t, out)
		checkMP3(t, data, rate, samples, 0)
		if a := mustDecode(t, data); len(a.Samples) != len(samples) {
			t.Errorf("%d Hz: %d samples; want exactly %d", rate, len(a.Samples), len(samples))
		}
	}
}

// TestDecodeMP3Stereo decodes a joint-stereo file lame wrote, keeping both channels in order.
func TestDecodeMP3Stereo(t *testing.T) {
	needProgram(t, "lame", "lame")
	left := chirp(44100, 0.5)
	stereo := make([]float32, 2*len(left))
	for i, s := range left {
		stereo[2*i], stereo[2*i+1] = s, -s/2
	}
	raw, out := filepath.Join(t.TempDir(), "in.raw"), filepath.Join(t.TempDir(), "out.mp3")
	if err := os.WriteFile(raw, s16(stereo), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "lame", "--quiet", "-r", "-s", "44.1", "--signed", "--little-endian", "-m", "j", "-b", "128", raw, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lame: %v: %s", err, b)
	}
	a := mustDecode(t, readFile(t, out))
	if a.Channels != 2 || a.Frames() != len(left) {
		t.Fatalf("%d channels, %d frames; want 2 channels, %d frames", a.Channels, a.Frames(), len(left))
	}
	var l, r []float32
	for i := 0; i < len(a.Samples); i += 2 {
		l, r = append(l, a.Samples[i]), append(r, -2*a.Samples[i+1])
	}
	for name, ch := range map[string][]float32{"left": l, "right": r} {
		if lag, corr := bestLag(left, ch, 10); lag != 0 || corr < 0.99 {
			t.Errorf("%s channel: correlation %0.3f at lag %d", name, corr, lag)
		}
	}
	if mono := a.Mono(); mono.Channels != 1 || rms(mono.Samples) > rms(l)/2 {
		t.Errorf("Mono of opposite channels has RMS %v; want about a quarter of %v", rms(mono.Samples), rms(l))
	}
}

// bestLag finds the shift of got against want, in [0, maxLag], of highest normalised
// correlation.
func bestLag(want, got []float32, maxLag int) (int, float64) {
	bestAt, best := 0, -2.0
	for lag := 0; lag <= maxLag; lag++ {
		var xy, xx, yy float64
		for i := 0; i < len(want) && i+lag < len(got); i++ {
			x, y := float64(want[i]), float64(got[i+lag])
			xy, xx, yy = xy+x*y, xx+x*x, yy+y*y
		}
		if c := xy / (math.Sqrt(xx*yy) + 1e-12); c > best {
			bestAt, best = lag, c
		}
	}
	return bestAt, best
}

// TestDecodeMP3WithTags checks that ID3v2 tags (with and without footer) before the frames and
// an ID3v1 tag after them do not change the audio.
func TestDecodeMP3WithTags(t *testing.T) {
	needProgram(t, "lame", "lame")
	data := encodeBytes(t, "mp3", 16000, sine(16000, 440, 0.5, 0.5))
	want := mustDecode(t, data)
	id3 := func(flags byte, body int) []byte {
		tag := []byte{'I', 'D', '3', 4, 0, flags, 0, 0, byte(body >> 7), byte(body & 0x7f)}
		tag = append(tag, append([]byte("TIT2"), make([]byte, body-4)...)...)
		if flags&0x10 != 0 {
			tag = append(tag, []byte{'3', 'D', 'I', 4, 0, flags, 0, 0, byte(body >> 7), byte(body & 0x7f)}...)
		}
		return tag
	}
	v1 := append([]byte("TAG"), make([]byte, 125)...)
	for name, file := range map[string][]byte{
		"ID3v2":             append(id3(0, 300), data...),
		"ID3v2 with footer": append(id3(0x10, 1000), data...),
		"two ID3v2 tags":    slices.Concat(id3(0, 20), id3(0, 200), data),
		"padding after tag": slices.Concat(id3(0, 20), make([]byte, 100), data),
		"ID3v1 at the end":  slices.Concat(data, v1),
	} {
		got := mustDecode(t, file)
		if !slices.Equal(got.Samples, want.Samples) {
			t.Errorf("%s: %d samples; without tags %d", name, len(got.Samples), len(want.Samples))
		}
	}
}

// TestEncodeOpus checks that opusenc makes Ogg Opus, and that decoding it is refused with a
// message naming the container.
func TestEncodeOpus(t *testing.T) {
	needProgram(t, "opusenc", "opus-tools")
	data := encodeBytes(t, "opus", 24000, sine(24000, 440, 0.5, 0.5))
	if !bytes.HasPrefix(data, []byte("OggS")) || !bytes.Contains(data[:100], []byte("OpusHead")) {
		t.Fatalf("output starts %q; want an Ogg Opus stream", data[:min(len(data), 40)])
	}
	_, err := audio.Decode(data)
	wantErr(t, err, audio.ErrUnsupported)
	if !strings.Contains(err.Error(), "Ogg") {
		t.Errorf("error %q does not name Ogg", err)
	}
}

// failingWriter accepts limit bytes, then fails.
type failingWriter struct{ limit int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		return 0, errors.New("client went away")
	}
	w.limit -= len(p)
	return len(p), nil
}

// TestEncoderProcessFailure checks that a failing writer ends an external encoder: Write
// reports the writer's error instead of blocking, and Close returns it.
func TestEncoderProcessFailure(t *testing.T) {
	needProgram(t, "lame", "lame")
	enc, err := audio.NewEncoder(&failingWriter{limit: 100}, "mp3", 16000)
	if err != nil {
		t.Fatal(err)
	}
	chunk := sine(16000, 440, 0.5, 0.5)
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		err = enc.Write(chunk)
	}
	if err == nil || !strings.Contains(err.Error(), "client went away") {
		t.Fatalf("Write error %v; want the writer's", err)
	}
	if cerr := enc.Close(); cerr == nil || cerr.Error() != err.Error() {
		t.Errorf("Close: %v; want %v", cerr, err)
	}
}

// flacCLI runs `flac -t` on path when the flac program is installed.
func flacCLI(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath("flac"); err != nil {
		t.Logf("flac is not installed (apt-get install flac); not checking with flac -t")
		return
	}
	out, err := exec.CommandContext(t.Context(), "flac", "-t", "-s", path).CombinedOutput()
	if err != nil {
		t.Errorf("flac -t %s: %v: %s", filepath.Base(path), err, out)
	}
}
