package pocketsphinx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/pocketsphinx"
)

// pieceSamples is how much audio goes to the decoder at a time: 128 ms at 16 kHz, as
// pocketsphinx_continuous feeds it. Pauses are detected, and ctx checked, between pieces.
const pieceSamples = 2048

// partialEvery is the least audio between two partial hypotheses.
const partialEvery = 200 * time.Millisecond

// Transcribe implements engine.STT.
func (m *model) Transcribe(ctx context.Context, req engine.TranscribeRequest, emit func(engine.TranscriptEvent) error) (engine.TranscribeResult, error) {
	if req.Read == nil {
		return engine.TranscribeResult{}, fmt.Errorf("%w: no audio", engine.ErrInvalidRequest)
	}
	if err := m.checkLanguage(req.Language); err != nil {
		return engine.TranscribeResult{}, err
	}
	d, err := m.acquire(ctx)
	if err != nil {
		return engine.TranscribeResult{}, err
	}
	start := time.Now()
	t := &transcription{d: d, rate: m.info.SampleRate, frameRate: d.FrameRate(), emit: emit}
	runErr := t.run(ctx, req.Read)
	if err := m.giveBack(ctx, d, t.uttOpen, runErr); err != nil {
		return engine.TranscribeResult{}, err
	}
	texts := make([]string, len(t.segments))
	for i, s := range t.segments {
		texts[i] = s.Text
	}
	return engine.TranscribeResult{
		Text:            strings.Join(texts, " "),
		Segments:        t.segments,
		Language:        m.info.Languages[0],
		AudioDuration:   t.duration(t.fed),
		ProcessDuration: time.Since(start),
	}, nil
}

// giveBack returns a request's decoder to the pool with no utterance open, and the request's
// error: runErr, or ctx's when the caller has gone. Then the utterance, if open, ends off the
// caller's path (a final search pass, up to a few hundred ms on a busy machine); Close still
// waits for it through release.
func (m *model) giveBack(ctx context.Context, d *native.Decoder, uttOpen bool, runErr error) error {
	if uttOpen && ctx.Err() != nil {
		go func() {
			_ = d.EndUtt()
			m.release(d)
		}()
		return ctx.Err()
	}
	if uttOpen {
		if err := d.EndUtt(); runErr == nil {
			runErr = err
		}
	}
	m.release(d)
	return runErr
}

// transcription is one request's run over one decoder.
type transcription struct {
	d         *native.Decoder
	rate      int
	frameRate int
	emit      func(engine.TranscriptEvent) error

	pcm         []int16
	fed         int64 // samples decoded so far
	uttOpen     bool  // between StartUtt and EndUtt
	inSpeech    bool  // the detector heard speech in the open utterance
	partialAt   int64 // fed at the last partial hypothesis
	lastPartial string
	segments    []engine.Segment
}

// run decodes the stream to its end. When it fails, an utterance may be left open (uttOpen).
func (t *transcription) run(ctx context.Context, read func() ([]float32, error)) error {
	if err := t.d.StartStream(); err != nil {
		return err
	}
	if err := t.startUtt(); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, readErr := read()
		if err := t.feed(ctx, chunk); err != nil {
			return err
		}
		if errors.Is(readErr, io.EOF) {
			return t.endUtt(false)
		}
		if readErr != nil {
			return fmt.Errorf("read audio: %w", readErr)
		}
	}
}

// feed decodes samples piece by piece, closing an utterance at each pause.
func (t *transcription) feed(ctx context.Context, samples []float32) error {
	for len(samples) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(samples), pieceSamples)
		t.pcm = toPCM(t.pcm[:0], samples[:n])
		samples = samples[n:]
		if err := t.d.ProcessRaw(t.pcm); err != nil {
			return err
		}
		t.fed += int64(n)
		inSpeech := t.d.InSpeech()
		switch {
		case inSpeech && !t.inSpeech:
			t.inSpeech = true
		case !inSpeech && t.inSpeech:
			if err := t.endUtt(true); err != nil {
				return err
			}
		case t.inSpeech && t.duration(t.fed-t.partialAt) >= partialEvery:
			if err := t.partial(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *transcription) startUtt() error {
	if err := t.d.StartUtt(); err != nil {
		return err
	}
	t.uttOpen, t.inSpeech, t.lastPartial = true, false, ""
	return nil
}

// endUtt ends the open utterance, emits its segment if it holds words, and starts the next
// one when more audio follows.
func (t *transcription) endUtt(more bool) error {
	t.uttOpen = false
	if err := t.d.EndUtt(); err != nil {
		return err
	}
	if seg, ok := t.segment(); ok {
		t.segments = append(t.segments, seg)
		if err := t.emit(engine.TranscriptEvent{Segment: &seg}); err != nil {
			return err
		}
	}
	if more {
		return t.startUtt()
	}
	return nil
}

// partial emits the running hypothesis when it changed.
func (t *transcription) partial() error {
	t.partialAt = t.fed
	hyp := strings.Join(cleanWords(strings.Fields(t.d.Hypothesis())), " ")
	if hyp == "" || hyp == t.lastPartial {
		return nil
	}
	t.lastPartial = hyp
	return t.emit(engine.TranscriptEvent{Partial: hyp})
}

// segment is the finished utterance's words with their times, fillers left out.
func (t *transcription) segment() (engine.Segment, bool) {
	var seg engine.Segment
	var texts []string
	for _, s := range t.d.Segments() {
		word, ok := cleanWord(s.Word)
		if !ok {
			continue
		}
		seg.Words = append(seg.Words, engine.Word{
			Word:        word,
			Start:       t.frameTime(s.StartFrame),
			End:         t.frameTime(s.EndFrame + 1),
			Probability: float32(s.Posterior),
		})
		texts = append(texts, word)
	}
	if len(seg.Words) == 0 {
		return seg, false
	}
	seg.Text = strings.Join(texts, " ")
	seg.Start, seg.End = seg.Words[0].Start, seg.Words[len(seg.Words)-1].End
	return seg, true
}

func (t *transcription) frameTime(frame int) time.Duration {
	return time.Duration(frame) * time.Second / time.Duration(t.frameRate)
}

func (t *transcription) duration(samples int64) time.Duration {
	return time.Duration(samples) * time.Second / time.Duration(t.rate)
}

// cleanWord drops fillers (<s>, </s>, <sil>, [NOISE], ++GARBAGE++) and the pronunciation
// variant suffix of dictionary words: "read(2)" is "read".
func cleanWord(w string) (string, bool) {
	if w == "" || strings.HasPrefix(w, "<") || strings.HasPrefix(w, "[") || strings.HasPrefix(w, "++") {
		return "", false
	}
	if i := strings.IndexByte(w, '('); i > 0 && strings.HasSuffix(w, ")") {
		w = w[:i]
	}
	return w, true
}

func cleanWords(words []string) []string {
	out := words[:0]
	for _, w := range words {
		if c, ok := cleanWord(w); ok {
			out = append(out, c)
		}
	}
	return out
}

// toPCM appends samples as 16-bit PCM to dst: scaled by 32768, rounded, clamped; NaN is 0
// (the inverse of internal/audio's int16 decoding).
func toPCM(dst []int16, samples []float32) []int16 {
	for _, s := range samples {
		v := math.Round(float64(s) * 32768)
		switch {
		case v != v:
			v = 0
		case v > math.MaxInt16:
			v = math.MaxInt16
		case v < math.MinInt16:
			v = math.MinInt16
		}
		dst = append(dst, int16(v))
	}
	return dst
}
