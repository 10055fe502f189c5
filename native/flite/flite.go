package flite

/*
#cgo CFLAGS: -I/usr/include/flite
#cgo LDFLAGS: -lflite_cmu_us_kal -lflite_cmu_us_kal16 -lflite_cmu_us_awb -lflite_cmu_us_rms -lflite_cmu_us_slt -lflite_usenglish -lflite_cmulex -lflite -lm
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"
)

// voiceNames are the voices this package links, the default first.
var voiceNames = []string{"slt", "kal", "kal16", "awb", "rms"}

// Voices lists the voices flite can speak with here, the default ("slt") first.
func Voices() []string { return append([]string(nil), voiceNames...) }

// Voice is a registered flite voice. Its methods are safe for concurrent use.
type Voice struct {
	name string
	c    *C.cst_voice
	rate int
	// mu serialises syntheses on this voice (see the package doc).
	mu sync.Mutex
}

var registry struct {
	sync.Mutex
	voices map[string]*Voice
}

// LoadVoice returns the voice called name, registering it with flite on first use.
func LoadVoice(name string) (*Voice, error) {
	registry.Lock()
	defer registry.Unlock()
	if v, ok := registry.voices[name]; ok {
		return v, nil
	}
	known := false
	for _, n := range voiceNames {
		known = known || n == name
	}
	if !known {
		return nil, fmt.Errorf("flite has no voice %q (voices: %s)", name, strings.Join(voiceNames, ", "))
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	c := C.syn_flite_register(cname)
	if c == nil {
		return nil, fmt.Errorf("flite could not register voice %q", name)
	}
	v := &Voice{name: name, c: c, rate: int(C.syn_flite_sample_rate(c))}
	if registry.voices == nil {
		registry.voices = make(map[string]*Voice)
	}
	registry.voices[name] = v
	return v, nil
}

// Name is the voice's short name ("slt").
func (v *Voice) Name() string { return v.name }

// SampleRate is the rate, in Hz, of the voice's audio.
func (v *Voice) SampleRate() int { return v.rate }

// Request is one synthesis.
type Request struct {
	Text string
	// DurationStretch multiplies every duration, on top of the voice's own stretch (2 speaks at
	// half speed); 0 and 1 keep the voice's pace.
	DurationStretch float32
	// ChunkSamples is the least number of samples in each call of the audio function but the
	// last; 0 for flite's default (256).
	ChunkSamples int
}

// ErrSynthesis means flite produced no utterance for the text.
var ErrSynthesis = errors.New("flite could not synthesize the text")

// Synthesize speaks req.Text, calling audio with each piece of samples (float32 in [-1, 1], at
// SampleRate; the slice is the caller's to keep) as flite makes it. audio returning false stops
// the synthesis; Synthesize then returns nil. Calls on one voice run one at a time.
func (v *Voice) Synthesize(req Request, audio func(samples []float32) bool) error {
	text := C.CString(req.Text)
	defer C.free(unsafe.Pointer(text))
	h := cgo.NewHandle(audio)
	defer h.Delete()
	v.mu.Lock()
	defer v.mu.Unlock()
	rc := C.syn_flite_synth(v.c, text, C.float(req.DurationStretch), C.int(req.ChunkSamples), C.uintptr_t(h))
	if rc < 0 {
		return ErrSynthesis
	}
	return nil
}

// synFliteAudio hands n samples of a synthesis in progress to its Go function; 0 stops it.
//
//export synFliteAudio
func synFliteAudio(h C.uintptr_t, samples *C.short, n C.int) C.int {
	audio := cgo.Handle(h).Value().(func([]float32) bool)
	pcm := unsafe.Slice((*int16)(unsafe.Pointer(samples)), int(n))
	out := make([]float32, len(pcm))
	for i, s := range pcm {
		out[i] = float32(s) / 32768
	}
	if !audio(out) {
		return 0
	}
	return 1
}
