// Package flite is the flite text-to-speech engine ("flite" in syn4pse.toml), in process through
// native/flite: US English voices slt (the default), kal (8 kHz), kal16, awb and rms.
//
// A model is a default voice; a request may name any voice (each chunk carries its rate).
// Speed maps to flite's duration_stretch (1/speed), from 0.25 to 4. Audio streams as flite makes
// it, in chunks of at least 100 ms: a synthesis runs on its own goroutine holding the voice
// (flite runs one synthesis per voice at a time, see native/flite) and never waits for emit, so a
// slow client does not hold the voice from others.
package flite

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/flite"
)

// Name is the engine's name in syn4pse.toml.
const Name = "flite"

// DefaultVoice speaks when neither the model nor the request names a voice.
const DefaultVoice = "slt"

// Speed limits: beyond them flite's speech is no longer intelligible.
const (
	minSpeed = 0.25
	maxSpeed = 4
)

// Engine loads flite voices.
type Engine struct{}

// New returns the flite engine.
func New() *Engine { return &Engine{} }

// Name implements engine.TTSEngine.
func (*Engine) Name() string { return Name }

// LoadTTS implements engine.TTSEngine: LoadOptions.Voice is the default voice (DefaultVoice
// when ""); Path is not used and Info's SizeBytes is 0: the voices are compiled into flite's
// shared libraries.
func (*Engine) LoadTTS(ctx context.Context, opts engine.LoadOptions) (engine.TTS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Language != "" && !isEnglish(opts.Language) {
		return nil, fmt.Errorf("flite: language %q: its voices speak only English (en)", opts.Language)
	}
	name := opts.Voice
	if name == "" {
		name = DefaultVoice
	}
	voice, err := native.LoadVoice(name)
	if err != nil {
		return nil, err
	}
	voices := []string{name}
	for _, v := range native.Voices() {
		if v != name {
			voices = append(voices, v)
		}
	}
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = runtime.NumCPU()
	}
	return &model{
		voice: voice,
		slots: engine.NewSlots(parallel),
		info: engine.ModelInfo{
			Architecture: "flite",
			Description:  "flite 2.2 (CMU), US English voices: slt, awb, rms (clustergen, 16 kHz), kal (diphone, 8 kHz), kal16 (diphone, 16 kHz)",
			SampleRate:   voice.SampleRate(),
			Voices:       voices,
			Languages:    []string{"en"},
			Parallel:     parallel,
		},
	}, nil
}

// model is a loaded flite model: a default voice.
type model struct {
	voice *native.Voice
	info  engine.ModelInfo

	// slots bounds the requests synthesizing at once (each voice still speaks one at a time).
	slots *engine.Slots
}

// Info implements engine.Model.
func (m *model) Info() engine.ModelInfo {
	return m.info.Clone()
}

// Stats implements engine.Model.
func (m *model) Stats() engine.Stats { return m.slots.Stats() }

// Close implements engine.Model: it waits for running requests. The voices stay registered in
// flite for the life of the process (they are static data).
func (m *model) Close() error {
	m.slots.Close()
	return nil
}

// Synthesize implements engine.TTS.
func (m *model) Synthesize(ctx context.Context, req engine.SynthesizeRequest, emit func(engine.AudioChunk) error) (engine.SynthesizeResult, error) {
	if err := m.slots.Acquire(ctx); err != nil {
		return engine.SynthesizeResult{}, err
	}
	defer m.slots.Release()
	voice, stretch, err := m.parse(req)
	if err != nil {
		return engine.SynthesizeResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return engine.SynthesizeResult{}, err
	}
	start := time.Now()
	rate := voice.SampleRate()
	samples, err := stream(ctx, voice, native.Request{Text: req.Text, DurationStretch: stretch, ChunkSamples: rate / 10}, func(s []float32) error {
		return emit(engine.AudioChunk{Rate: rate, Samples: s})
	})
	if err != nil {
		return engine.SynthesizeResult{}, err
	}
	return engine.SynthesizeResult{
		Rate:            rate,
		AudioDuration:   time.Duration(samples) * time.Second / time.Duration(rate),
		ProcessDuration: time.Since(start),
	}, nil
}

// parse checks a request and returns its voice and duration stretch.
func (m *model) parse(req engine.SynthesizeRequest) (*native.Voice, float32, error) {
	if strings.TrimSpace(req.Text) == "" {
		return nil, 0, fmt.Errorf("%w: no text to speak", engine.ErrInvalidRequest)
	}
	speed := req.Speed
	if speed == 0 {
		speed = 1
	}
	if !(speed >= minSpeed && speed <= maxSpeed) {
		return nil, 0, fmt.Errorf("%w: speed %g: flite speaks from %g to %g times the normal rate", engine.ErrInvalidRequest, req.Speed, minSpeed, float64(maxSpeed))
	}
	voice := m.voice
	if req.Voice != "" && req.Voice != voice.Name() {
		v, err := native.LoadVoice(req.Voice)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: voice %q: flite's voices are %s", engine.ErrInvalidRequest, req.Voice, strings.Join(m.info.Voices, ", "))
		}
		voice = v
	}
	return voice, float32(1 / float64(speed)), nil
}

// stream runs one synthesis on its own goroutine and emits its audio on this one, so that emit
// never runs while flite holds the voice. It returns the number of samples emitted. When ctx ends
// or emit fails, the synthesis stops at its next piece of audio; stream waits for it either way.
func stream(ctx context.Context, voice *native.Voice, req native.Request, emit func([]float32) error) (int, error) {
	var (
		mu      sync.Mutex
		pending [][]float32
		stop    atomic.Bool
	)
	ready := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- voice.Synthesize(req, func(s []float32) bool {
			if stop.Load() {
				return false
			}
			mu.Lock()
			pending = append(pending, s)
			mu.Unlock()
			select {
			case ready <- struct{}{}:
			default:
			}
			return true
		})
	}()
	emitted := 0
	flush := func() error {
		mu.Lock()
		chunks := pending
		pending = nil
		mu.Unlock()
		for _, c := range chunks {
			if err := ctx.Err(); err != nil {
				return err // no audio after the caller stopped listening
			}
			if err := emit(c); err != nil {
				return err
			}
			emitted += len(c)
		}
		return nil
	}
	abort := func(err error) (int, error) {
		stop.Store(true)
		<-done
		return emitted, err
	}
	for {
		select {
		case <-ready:
			if err := flush(); err != nil {
				return abort(err)
			}
		case err := <-done:
			if err != nil {
				return emitted, err
			}
			if err := ctx.Err(); err != nil {
				return emitted, err
			}
			return emitted, flush()
		case <-ctx.Done():
			return abort(ctx.Err())
		}
	}
}

func isEnglish(tag string) bool {
	lower := strings.ToLower(tag)
	return lower == "en" || strings.HasPrefix(lower, "en-") || strings.HasPrefix(lower, "en_")
}
