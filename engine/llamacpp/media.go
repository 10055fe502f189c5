package llamacpp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// Requests with images or audio (engine.Message.Media), for a model loaded with a multimodal
// projector (mmproj). Generate checks the media against what the projector takes, renders the
// chat template as for text (engine.MediaMarker passes through it as text) and tokenizes the
// result with mtmd, which decodes each item for its marker. The loop gives such a request a slot
// with an empty cache, since the positions of media embeddings are no tokens and share no
// prefix, and evaluates the whole prompt in a step of its own (mtmd_helper_eval_chunks decodes
// the text and media chunks itself); the other sequences wait that step. Then the request
// generates like any other.

// mediaPosition stands in slot.tokens for a position a media prompt filled. It equals no token
// of any prompt, so no later request reuses that cache.
const mediaPosition int32 = -1

// checkMedia returns the data of the media of req's messages, in order, or nil when there are
// none. It fails when the model cannot take them or the markers do not match the items.
func (m *model) checkMedia(req engine.GenerateRequest) ([][]byte, error) {
	if !hasMedia(req.Messages) {
		return nil, nil
	}
	if m.proj == nil {
		return nil, fmt.Errorf("%w: this model takes text only: it has no multimodal projector (set mmproj in its model config to the projector GGUF of a model that takes images or audio)", engine.ErrUnsupported)
	}
	var media [][]byte
	for i, msg := range req.Messages {
		if n := strings.Count(msg.Content, engine.MediaMarker); n != len(msg.Media) {
			return nil, fmt.Errorf("%w: messages[%d] has %d media items and %d markers %q in its content: want one marker per item, where it goes", engine.ErrInvalidRequest, i, len(msg.Media), n, engine.MediaMarker)
		}
		for j, item := range msg.Media {
			audio := isAudio(item)
			switch {
			case audio && !m.proj.Audio():
				return nil, fmt.Errorf("%w: messages[%d].media[%d] is audio, but this model takes images only", engine.ErrInvalidRequest, i, j)
			case !audio && !m.proj.Vision():
				return nil, fmt.Errorf("%w: messages[%d].media[%d] is not WAV, MP3 or FLAC audio, and this model takes audio only", engine.ErrInvalidRequest, i, j)
			}
			media = append(media, item.Data)
		}
	}
	return media, nil
}

func hasMedia(msgs []engine.Message) bool {
	for _, msg := range msgs {
		if len(msg.Media) > 0 {
			return true
		}
	}
	return false
}

// isAudio tells audio from images by the MIME type, else by the magic numbers of the formats
// mtmd decodes (miniaudio's WAV, MP3 and FLAC).
func isAudio(item engine.Media) bool {
	switch {
	case strings.HasPrefix(item.MIME, "audio/"):
		return true
	case strings.HasPrefix(item.MIME, "image/"):
		return false
	}
	d := item.Data
	return len(d) >= 12 && string(d[:4]) == "RIFF" && string(d[8:12]) == "WAVE" ||
		len(d) >= 4 && string(d[:4]) == "fLaC" ||
		len(d) >= 3 && string(d[:3]) == "ID3" ||
		len(d) >= 2 && d[0] == 0xFF && d[1]&0xE0 == 0xE0
}

// tokenizeMedia tokenizes the rendered prompt with its media. The caller frees the result.
func (m *model) tokenizeMedia(prompt string, media [][]byte) (*native.MediaPrompt, error) {
	prompt = strings.ReplaceAll(prompt, engine.MediaMarker, native.MediaMarker())
	addSpecial := !(m.bos != "" && strings.HasPrefix(prompt, m.bos))
	mp, err := m.proj.Tokenize(prompt, addSpecial, media)
	if errors.Is(err, native.ErrMarkers) {
		return nil, fmt.Errorf("%w: the chat template did not keep one marker per media item in the prompt", engine.ErrInvalidRequest)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", engine.ErrInvalidRequest, err)
	}
	return mp, nil
}

// startMedia puts r, whose prompt has media, in s, emptying s's cache.
func (l *loop) startMedia(s *slot, r *request) {
	l.lctx.RemoveTokens(s.seq, 0, -1)
	s.tokens = s.tokens[:0]
	s.req, s.pending, s.media = r, nil, true
	s.started = time.Now()
	s.res = engine.GenerateResult{PromptTokens: r.media.Tokens, QueueDuration: s.started.Sub(r.queuedAt)}
	l.active.Add(1)
	l.requests.Add(1)
}

// mediaSlot is a slot whose media prompt is still to evaluate, nil when none is.
func (l *loop) mediaSlot() *slot {
	for _, s := range l.slots {
		if s.req != nil && s.media {
			return s
		}
	}
	return nil
}

// evalMedia is a step of its own: it evaluates the media prompt of s's request into s's
// sequence and samples the request's first token.
func (l *loop) evalMedia(s *slot) {
	r := s.req
	l.flightMu.Lock()
	l.inFlight = append(l.inFlight[:0], r)
	l.lctx.SetAbort(false)
	l.flightMu.Unlock()
	var pos int
	var err error
	if !r.stopped.Load() {
		pos, err = l.proj.Eval(l.lctx, r.media, 0, s.seq, l.batchSize)
	}
	l.flightMu.Lock()
	l.inFlight = l.inFlight[:0]
	l.flightMu.Unlock()

	switch {
	case r.stopped.Load():
		// Generate gave up on it, perhaps aborting the decode: the next step ends it.
		l.lctx.RemoveTokens(s.seq, 0, -1)
		return
	case errors.Is(err, native.ErrNoKVSlot):
		l.lctx.RemoveTokens(s.seq, 0, -1)
		l.relieveCache()
		return
	case err != nil:
		l.lctx.RemoveTokens(s.seq, 0, -1)
		l.finish(s, fmt.Errorf("llama.cpp failed to evaluate the prompt with media: %w", err))
		return
	}

	s.media = false
	for range pos {
		s.tokens = append(s.tokens, mediaPosition)
	}
	s.genFrom = time.Now()
	s.res.PromptDuration = s.genFrom.Sub(s.started)
	l.sentTo = append(l.sentTo[:0], r)
	// Eval leaves the logits of the prompt's last token as the context's last output.
	l.accept(s, r.sampler.Sample(l.lctx, -1))
	l.awaitReaders()
}
