package audio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ekisa-team/syn4pse/internal/audio"
)

// sine returns seconds of a sine of freq Hz and amplitude amp at rate.
func sine(rate int, freq, amp, seconds float64) []float32 {
	out := make([]float32, int(seconds*float64(rate)))
	for i := range out {
		out[i] = float32(amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return out
}

// rms is the root mean square of samples.
func rms(samples []float32) float64 {
	var sum float64
	for _, s := range samples {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(max(len(samples), 1)))
}

// chunk is a RIFF chunk, padded to an even size.
func chunk(id string, body []byte) []byte {
	out := binary.LittleEndian.AppendUint32([]byte(id), uint32(len(body)))
	out = append(out, body...)
	if len(body)%2 == 1 {
		out = append(out, 0)
	}
	return out
}

// riff is a RIFF WAVE file of chunks.
func riff(chunks ...[]byte) []byte {
	body := []byte("WAVE")
	for _, c := range chunks {
		body = append(body, c...)
	}
	return chunk("RIFF", body)
}

// fmtChunk is a plain fmt chunk.
func fmtChunk(tag uint16, channels, rate, bits, blockAlign int) []byte {
	le := binary.LittleEndian
	b := le.AppendUint16(nil, tag)
	b = le.AppendUint16(b, uint16(channels))
	b = le.AppendUint32(b, uint32(rate))
	b = le.AppendUint32(b, uint32(rate*blockAlign))
	b = le.AppendUint16(b, uint16(blockAlign))
	b = le.AppendUint16(b, uint16(bits))
	return chunk("fmt ", b)
}

// extensibleFmt is a WAVE_FORMAT_EXTENSIBLE fmt chunk with sub-format sub (1 PCM, 3 float).
func extensibleFmt(sub uint16, channels, rate, containerBits, validBits int) []byte {
	le := binary.LittleEndian
	blockAlign := channels * containerBits / 8
	b := le.AppendUint16(nil, 0xfffe)
	b = le.AppendUint16(b, uint16(channels))
	b = le.AppendUint32(b, uint32(rate))
	b = le.AppendUint32(b, uint32(rate*blockAlign))
	b = le.AppendUint16(b, uint16(blockAlign))
	b = le.AppendUint16(b, uint16(containerBits))
	b = le.AppendUint16(b, 22) // cbSize
	b = le.AppendUint16(b, uint16(validBits))
	b = le.AppendUint32(b, 4) // channel mask: front centre
	b = le.AppendUint16(b, sub)
	b = append(b, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71)
	return chunk("fmt ", b)
}

// s16 encodes samples as s16le.
func s16(samples []float32) []byte {
	var b []byte
	for _, v := range audio.ToInt16(samples) {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	return b
}

// wav16 is a 16-bit mono WAV file of samples.
func wav16(rate int, samples []float32) []byte {
	return riff(fmtChunk(1, 1, rate, 16, 2), chunk("data", s16(samples)))
}

// quantize16 is what samples become through 16-bit PCM.
func quantize16(samples []float32) []float32 {
	return audio.FromInt16(audio.ToInt16(samples))
}

// mustDecode decodes data, failing the test on error.
func mustDecode(t *testing.T, data []byte) audio.Audio {
	t.Helper()
	a, err := audio.Decode(data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return a
}

// wantErr fails unless err wraps want.
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v; want one wrapping %q", err, want)
	}
}

// equalSamples fails unless got and want match within tol.
func equalSamples(t *testing.T, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d samples; want %d", len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > tol {
			t.Fatalf("sample %d is %v; want %v", i, got[i], want[i])
		}
	}
}

// encode runs samples through an Encoder of format at rate, in chunks of chunkSize, into w.
func encode(t testing.TB, w io.Writer, format string, rate int, samples []float32, chunkSize int) {
	t.Helper()
	enc, err := audio.NewEncoder(w, format, rate)
	if err != nil {
		t.Fatal(err)
	}
	for len(samples) > 0 {
		n := min(chunkSize, len(samples))
		if err := enc.Write(samples[:n]); err != nil {
			t.Fatal(err)
		}
		samples = samples[n:]
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
}

// encodeBytes is encode into memory.
func encodeBytes(t *testing.T, format string, rate int, samples []float32) []byte {
	t.Helper()
	var buf bytes.Buffer
	encode(t, &buf, format, rate, samples, 1000)
	return buf.Bytes()
}

// needProgram skips the test when program is not installed.
func needProgram(t *testing.T, program, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		t.Skipf("%s is not installed (apt-get install %s); skipping", program, pkg)
	}
}

// fixture returns the first file matching pattern, skipping the test when there is none.
func fixture(t *testing.T, pattern, pkg string) string {
	t.Helper()
	paths, _ := filepath.Glob(pattern)
	if len(paths) == 0 {
		t.Skipf("no %s (apt-get install %s); skipping", pattern, pkg)
	}
	return paths[0]
}

// readFile reads path, failing the test on error.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
