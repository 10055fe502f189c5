package pocketsphinx

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	modelDir = "/usr/share/pocketsphinx/model/en-us"
	testData = "/usr/share/pocketsphinx/test/data"
)

func testConfig(t testing.TB) Config {
	t.Helper()
	if _, err := os.Stat(filepath.Join(modelDir, "en-us", "mdef")); err != nil {
		t.Skipf("the PocketSphinx English model is missing (apt-get install pocketsphinx-en-us): %v", err)
	}
	return Config{
		AcousticModel: filepath.Join(modelDir, "en-us"),
		LanguageModel: filepath.Join(modelDir, "en-us.lm.bin"),
		Dictionary:    filepath.Join(modelDir, "cmudict-en-us.dict"),
	}
}

func readRaw(t testing.TB, name string) []int16 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testData, name))
	if err != nil {
		t.Skipf("PocketSphinx test data missing (apt-get install pocketsphinx-testdata): %v", err)
	}
	pcm := make([]int16, len(data)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
	}
	return pcm
}

func newDecoder(t testing.TB) *Decoder {
	t.Helper()
	d, err := NewDecoder(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// decodeAll decodes pcm as one stream and one utterance.
func decodeAll(t *testing.T, d *Decoder, pcm []int16) (string, []Segment) {
	t.Helper()
	if err := d.StartStream(); err != nil {
		t.Fatal(err)
	}
	if err := d.StartUtt(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(pcm); i += 2048 {
		if err := d.ProcessRaw(pcm[i:min(i+2048, len(pcm))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.EndUtt(); err != nil {
		t.Fatal(err)
	}
	return d.Hypothesis(), d.Segments()
}

func TestDecodeGoForward(t *testing.T) {
	d := newDecoder(t)
	if d.SampleRate() != 16000 || d.FrameRate() != 100 {
		t.Fatalf("SampleRate %d FrameRate %d, want 16000 and 100", d.SampleRate(), d.FrameRate())
	}
	hyp, segs := decodeAll(t, d, readRaw(t, "goforward.raw"))
	if hyp != "go forward ten meters" {
		t.Errorf("hypothesis %q, want %q", hyp, "go forward ten meters")
	}
	var words []string
	last := -1
	for _, s := range segs {
		if s.StartFrame > s.EndFrame || s.StartFrame <= last || s.Posterior <= 0 || s.Posterior > 1 {
			t.Errorf("bad segment %+v after frame %d", s, last)
		}
		last = s.EndFrame
		if !strings.HasPrefix(s.Word, "<") {
			words = append(words, strings.SplitN(s.Word, "(", 2)[0])
		}
	}
	if got := strings.Join(words, " "); got != hyp {
		t.Errorf("segment words %q differ from the hypothesis %q", got, hyp)
	}
}

// A decoder that heard other audio decodes a new stream exactly as a fresh decoder does.
func TestStartStreamForgetsHistory(t *testing.T) {
	fresh := newDecoder(t)
	wantHyp, wantSegs := decodeAll(t, fresh, readRaw(t, "goforward.raw"))
	used := newDecoder(t)
	decodeAll(t, used, readRaw(t, "numbers.raw"))
	gotHyp, gotSegs := decodeAll(t, used, readRaw(t, "goforward.raw"))
	if gotHyp != wantHyp || !reflect.DeepEqual(gotSegs, wantSegs) {
		t.Errorf("after other audio: %q %v\nfresh decoder: %q %v", gotHyp, gotSegs, wantHyp, wantSegs)
	}
}

func TestNewDecoderErrors(t *testing.T) {
	good := testConfig(t)
	missingDict := good
	missingDict.Dictionary = filepath.Join(t.TempDir(), "none.dict")
	badLM := good
	badLM.LanguageModel = filepath.Join(t.TempDir(), "bad.lm")
	if err := os.WriteFile(badLM.LanguageModel, []byte("not a language model"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{"missing dictionary": missingDict, "bad language model": badLM} {
		t.Run(name, func(t *testing.T) {
			d, err := NewDecoder(cfg)
			if err == nil {
				d.Close()
				t.Fatal("NewDecoder succeeded")
			}
			t.Logf("error: %v", err)
		})
	}
}

// BenchmarkNewDecoder reports the time to make a decoder and the resident memory it adds.
func BenchmarkNewDecoder(b *testing.B) {
	cfg := testConfig(b)
	var grown float64
	for b.Loop() {
		before := residentBytes(b)
		d, err := NewDecoder(cfg)
		if err != nil {
			b.Fatal(err)
		}
		grown += float64(residentBytes(b) - before)
		d.Close()
	}
	b.ReportMetric(grown/float64(b.N)/(1<<20), "MB/decoder")
}

func residentBytes(tb testing.TB) int64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Skip("no /proc/self/statm")
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(data), &size, &resident); err != nil {
		tb.Fatal(err)
	}
	return resident * int64(os.Getpagesize())
}
