package audio_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/internal/audio"
)

// validFiles returns small files of every container: the seeds of the corruption tests.
func validFiles(t testing.TB) map[string][]byte {
	samples := chirp(16000, 0.2)
	files := map[string][]byte{
		"wav":  wav16(16000, samples),
		"flac": flacBytes(t, samples),
	}
	if _, err := exec.LookPath("lame"); err == nil {
		var buf bytes.Buffer
		enc, err := audio.NewEncoder(&buf, "mp3", 16000)
		if err == nil && enc.Write(samples) == nil && enc.Close() == nil {
			files["mp3"] = buf.Bytes()
			files["mp3 with ID3"] = append([]byte("ID3\x04\x00\x00\x00\x00\x00\x0aTIT2\x00\x00\x00\x02\x00\x00x"), buf.Bytes()...)
		}
	}
	return files
}

// flacBytes encodes samples as 16 kHz FLAC in memory.
func flacBytes(t testing.TB, samples []float32) []byte {
	var buf bytes.Buffer
	enc, err := audio.NewEncoder(&buf, "flac", 16000)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Write(samples); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkDecodeOutcome is the contract of Decode on any input: either audio that keeps the
// invariants, or an error wrapping one of the sentinels.
func checkDecodeOutcome(t testing.TB, data []byte, a audio.Audio, err error) {
	if err != nil {
		if !errors.Is(err, audio.ErrCorrupt) && !errors.Is(err, audio.ErrUnsupported) && !errors.Is(err, audio.ErrTooLong) {
			t.Fatalf("%d bytes starting %q: error %v wraps no sentinel", len(data), data[:min(len(data), 16)], err)
		}
		return
	}
	if a.Rate < audio.MinRate || a.Rate > audio.MaxRate || a.Channels < 1 || len(a.Samples)%a.Channels != 0 {
		t.Fatalf("decoded %d Hz, %d channels, %d samples", a.Rate, a.Channels, len(a.Samples))
	}
	for i, s := range a.Samples {
		if !(s >= -1 && s <= 1) {
			t.Fatalf("sample %d is %v, outside [-1, 1]", i, s)
		}
	}
}

// TestDecodeDamagedFiles cuts every container at many points and overwrites bytes at random:
// decoding must return audio or a sentinel error, never panic.
func TestDecodeDamagedFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	dec := audio.Decoder{MaxDuration: 10 * time.Second}
	for name, file := range validFiles(t) {
		for cut := 0; cut < len(file); cut += 1 + len(file)/300 {
			a, err := dec.Decode(file[:cut])
			checkDecodeOutcome(t, file[:cut], a, err)
		}
		for range 300 {
			damaged := bytes.Clone(file)
			for range 1 + rng.IntN(8) {
				damaged[rng.IntN(len(damaged))] = byte(rng.Uint32())
			}
			a, err := dec.Decode(damaged)
			checkDecodeOutcome(t, damaged, a, err)
		}
		t.Logf("%s: %d bytes survived cuts and damage", name, len(file))
	}
}

// TestDecodeRejectsOtherData checks that non-audio and unsupported containers give
// ErrUnsupported naming what it saw and what is supported, and that empty or truncated
// headers give ErrCorrupt.
func TestDecodeRejectsOtherData(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	random[0] = 'x' // not by chance a frame sync
	for _, tc := range []struct {
		name     string
		data     string
		want     error
		mentions string
	}{
		{"empty", "", audio.ErrCorrupt, "no data"},
		{"random", string(random), audio.ErrUnsupported, "unrecognised"},
		{"text", "hello, this is not audio", audio.ErrUnsupported, "WAV (PCM or float), MP3, FLAC or raw PCM s16le"},
		{"Ogg", "OggS\x00\x02" + strings.Repeat("\x00", 50), audio.ErrUnsupported, "Ogg"},
		{"MP4", "\x00\x00\x00\x20ftypM4A " + strings.Repeat("\x00", 50), audio.ErrUnsupported, "MP4"},
		{"WebM", "\x1a\x45\xdf\xa3" + strings.Repeat("\x00", 50), audio.ErrUnsupported, "WebM"},
		{"AIFF", "FORM\x00\x00\x00\x40AIFF" + strings.Repeat("\x00", 50), audio.ErrUnsupported, "AIFF"},
		{"AVI", "RIFF\x00\x00\x00\x40AVI " + strings.Repeat("\x00", 50), audio.ErrUnsupported, "not WAVE"},
		{"AAC ADTS", "\xff\xf1\x50\x80" + strings.Repeat("\x00", 50), audio.ErrUnsupported, "AAC"},
		{"ID3 only", "ID3\x04\x00\x00\x00\x00\x00\x00", audio.ErrUnsupported, "not followed by MP3"},
		{"ID3 claims 256 MB", "ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + strings.Repeat("\x00", 100), audio.ErrCorrupt, "ID3 tag claims"},
		{"ID3 cut", "ID3\x04", audio.ErrCorrupt, "ID3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if n := allocated(func() { _, err = audio.Decode([]byte(tc.data)) }); n > 1<<20 {
				t.Errorf("allocated %d bytes", n)
			}
			wantErr(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %q does not mention %q", err, tc.mentions)
			}
		})
	}
}

// TestDecodeMP3Truncated checks that an MP3 cut before its first whole frame is corrupt, and one
// cut later decodes to the frames that are whole, as players do.
func TestDecodeMP3Truncated(t *testing.T) {
	files := validFiles(t)
	mp3, ok := files["mp3"]
	if !ok {
		t.Skip("lame is not installed (apt-get install lame); skipping")
	}
	_, err := audio.Decode(mp3[:40])
	wantErr(t, err, audio.ErrCorrupt)
	whole, half := mustDecode(t, mp3), mustDecode(t, mp3[:len(mp3)/2])
	if len(half.Samples) == 0 || len(half.Samples) >= len(whole.Samples) {
		t.Errorf("half the file decodes to %d samples of %d", len(half.Samples), len(whole.Samples))
	}
	_, err = audio.Decoder{MaxDuration: 50 * time.Millisecond}.Decode(mp3)
	wantErr(t, err, audio.ErrTooLong)
}

// FuzzDecode checks the Decode contract on arbitrary input: `go test -fuzz FuzzDecode`.
func FuzzDecode(f *testing.F) {
	for _, file := range validFiles(f) {
		f.Add(file)
	}
	f.Add([]byte("RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x10\x00data\xff\xff\xff\xff\x01\x02"))
	f.Add([]byte("fLaC\x80\x00\x00\x22"))
	f.Add([]byte("ID3\x03\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64"))
	dec := audio.Decoder{MaxDuration: 30 * time.Second, MaxSamples: 1 << 22}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := dec.Decode(data)
		checkDecodeOutcome(t, data, a, err)
	})
}
