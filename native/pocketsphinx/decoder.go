package pocketsphinx

/*
#cgo pkg-config: pocketsphinx sphinxbase
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// Config names the files a decoder loads.
type Config struct {
	// AcousticModel is the acoustic model directory (-hmm): mdef, means, variances, feat.params...
	AcousticModel string
	// LanguageModel is the n-gram language model file (-lm): ARPA, DMP or binary.
	LanguageModel string
	// Dictionary is the pronunciation dictionary (-dict).
	Dictionary string
}

// Decoder is one PocketSphinx decoder. Close frees it.
type Decoder struct {
	c *C.syn_ps
}

// Segment is one word (or filler such as <sil>) of a hypothesis.
type Segment struct {
	// Word is as the dictionary spells it: pronunciation variants keep their suffix ("read(2)").
	Word string
	// StartFrame and EndFrame are inclusive frame numbers from the start of the stream.
	StartFrame, EndFrame int
	// Posterior is the word's posterior probability, 0..1, after EndUtt; 1 for partial results.
	Posterior float64
}

var logOnce sync.Once

// NewDecoder loads the models named by cfg: with Debian's en-us model, about 0.9 s and 80 MB
// (BenchmarkNewDecoder). The error says which file PocketSphinx could not load.
func NewDecoder(cfg Config) (*Decoder, error) {
	logOnce.Do(func() { C.syn_ps_log_init() })
	args := []string{"-hmm", cfg.AcousticModel, "-lm", cfg.LanguageModel, "-dict", cfg.Dictionary}
	argv := make([]*C.char, len(args))
	for i, a := range args {
		argv[i] = C.CString(a)
	}
	defer func() {
		for _, p := range argv {
			C.free(unsafe.Pointer(p))
		}
	}()
	// argv lives in C memory: cgo forbids passing Go memory that holds (C) pointers.
	cargv := (**C.char)(C.malloc(C.size_t(len(argv)) * C.size_t(unsafe.Sizeof(argv[0]))))
	defer C.free(unsafe.Pointer(cargv))
	copy(unsafe.Slice(cargv, len(argv)), argv)
	var errbuf [512]C.char
	d := C.syn_ps_new(C.int(len(argv)), cargv, &errbuf[0], C.size_t(len(errbuf)))
	if d == nil {
		msg := strings.TrimSpace(C.GoString(&errbuf[0]))
		if msg == "" {
			msg = "no reason logged"
		}
		return nil, fmt.Errorf("pocketsphinx could not load the model (%s)", msg)
	}
	return &Decoder{c: d}, nil
}

// Close frees the decoder.
func (d *Decoder) Close() error {
	if d.c != nil {
		C.syn_ps_free(d.c)
		d.c = nil
	}
	return nil
}

// SampleRate is the rate, in Hz, of the samples ProcessRaw takes (-samprate).
func (d *Decoder) SampleRate() int {
	name := C.CString("-samprate")
	defer C.free(unsafe.Pointer(name))
	return int(C.syn_ps_config_float(d.c, name))
}

// FrameRate is the number of frames a second (-frate): segment frames are 1/FrameRate s long.
func (d *Decoder) FrameRate() int {
	name := C.CString("-frate")
	defer C.free(unsafe.Pointer(name))
	return int(C.syn_ps_config_int(d.c, name))
}

// StartStream starts a new audio stream: frame numbers restart at 0 and the live estimates of
// the channel (cepstral mean, noise) return to their initial values.
func (d *Decoder) StartStream() error {
	if C.syn_ps_start_stream(d.c) < 0 {
		return errors.New("pocketsphinx: ps_start_stream failed")
	}
	return nil
}

// StartUtt starts an utterance.
func (d *Decoder) StartUtt() error {
	if C.ps_start_utt(d.c.ps) < 0 {
		return errors.New("pocketsphinx: ps_start_utt failed (an utterance already running?)")
	}
	return nil
}

// ProcessRaw decodes 16-bit samples at SampleRate.
func (d *Decoder) ProcessRaw(pcm []int16) error {
	if len(pcm) == 0 {
		return nil
	}
	n := C.ps_process_raw(d.c.ps, (*C.int16)(unsafe.Pointer(&pcm[0])), C.size_t(len(pcm)), 0, 0)
	if n < 0 {
		return errors.New("pocketsphinx: ps_process_raw failed")
	}
	return nil
}

// InSpeech says whether the voice-activity detector was in speech at the end of the samples
// last processed; it turns false after a pause (-vad_postspeech, 0.5 s by default).
func (d *Decoder) InSpeech() bool {
	return C.ps_get_in_speech(d.c.ps) != 0
}

// EndUtt ends the utterance; Hypothesis and Segments then give its final result.
func (d *Decoder) EndUtt() error {
	if C.ps_end_utt(d.c.ps) < 0 {
		return errors.New("pocketsphinx: ps_end_utt failed")
	}
	return nil
}

// Hypothesis is the best word string so far (fillers and variant suffixes removed by
// PocketSphinx), "" when there is none.
func (d *Decoder) Hypothesis() string {
	var score C.int32
	hyp := C.ps_get_hyp(d.c.ps, &score)
	if hyp == nil {
		return ""
	}
	return C.GoString(hyp)
}

// Segments is the word segmentation of the best hypothesis, fillers included.
func (d *Decoder) Segments() []Segment {
	var out []Segment
	// ps_seg_next frees the iterator when it returns NULL.
	for seg := C.ps_seg_iter(d.c.ps); seg != nil; seg = C.ps_seg_next(seg) {
		var sf, ef C.int
		C.ps_seg_frames(seg, &sf, &ef)
		var ascr, lscr, lback C.int32
		prob := C.ps_seg_prob(seg, &ascr, &lscr, &lback)
		out = append(out, Segment{
			Word:       C.GoString(C.ps_seg_word(seg)),
			StartFrame: int(sf),
			EndFrame:   int(ef),
			Posterior:  float64(C.syn_ps_posterior(d.c, prob)),
		})
	}
	return out
}
