package pocketsphinx

import (
	"context"
	"fmt"
	"strings"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/pocketsphinx"
)

// model is a loaded PocketSphinx model: a pool of decoders over one set of files.
type model struct {
	config native.Config
	info   engine.ModelInfo
	// slots admits a request per decoder in use or being made: at most info.Parallel.
	slots *engine.Slots
	// idle holds the decoders made and not in use; it never holds more than info.Parallel.
	idle chan *native.Decoder
}

func newModel(config native.Config, info engine.ModelInfo, first *native.Decoder) *model {
	m := &model{config: config, info: info, slots: engine.NewSlots(info.Parallel), idle: make(chan *native.Decoder, info.Parallel)}
	m.idle <- first
	return m
}

// Info implements engine.Model.
func (m *model) Info() engine.ModelInfo {
	return m.info.Clone()
}

// Stats implements engine.Model.
func (m *model) Stats() engine.Stats { return m.slots.Stats() }

// Close implements engine.Model: queued requests fail with engine.ErrClosed, running ones end,
// then every decoder is freed.
func (m *model) Close() error {
	if !m.slots.Close() {
		return nil
	}
	for {
		select {
		case d := <-m.idle:
			d.Close()
		default:
			return nil
		}
	}
}

// acquire waits for a free decoder, making one when none is idle and the pool is not full.
// A nil error means the caller must call release with the decoder.
func (m *model) acquire(ctx context.Context) (*native.Decoder, error) {
	if err := m.slots.Acquire(ctx); err != nil {
		return nil, err
	}
	select {
	case d := <-m.idle:
		return d, nil
	default:
	}
	d, err := native.NewDecoder(m.config)
	if err != nil {
		m.release(nil)
		return nil, fmt.Errorf("another decoder for a parallel request: %w", err)
	}
	return d, nil
}

// release returns a decoder (nil when making it failed) to the pool.
func (m *model) release(d *native.Decoder) {
	if d != nil {
		m.idle <- d
	}
	m.slots.Release()
}

// checkLanguage accepts "" and any tag of the model's language ("en", "en-US").
func (m *model) checkLanguage(tag string) error {
	want := m.info.Languages[0]
	if tag == "" || strings.EqualFold(primary(tag), primary(want)) {
		return nil
	}
	name := want
	if primary(want) == "en" {
		name = "English (" + want + ")"
	}
	return fmt.Errorf("%w: language %q: this PocketSphinx model is %s; load a model for that language", engine.ErrInvalidRequest, tag, name)
}

// primary is a BCP 47 tag's language subtag: "en" for "en-US" (and "en_US").
func primary(tag string) string {
	if i := strings.IndexAny(tag, "-_"); i >= 0 {
		return tag[:i]
	}
	return tag
}
