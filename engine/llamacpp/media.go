package llamacpp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/audio"
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

// checkMedia returns the media of req's messages, in order, audio decoded, or nil when there
// are none. It fails when the model cannot take them or the markers do not match the items.
func (m *model) checkMedia(req engine.GenerateRequest) ([]native.Media, error) {
	if !hasMedia(req.Messages) {
		return nil, nil
	}
	if m.proj == nil {
		// An invalid request for this model, as OpenAI answers an image to a text model: 400.
		return nil, fmt.Errorf("%w: this model has no %s: it takes text only, having no multimodal projector (set mmproj in its model config to the projector GGUF of a model that takes images or audio)", engine.ErrInvalidRequest, mediaSense(req.Messages))
	}
	var media []native.Media
	for i, msg := range req.Messages {
		if n := strings.Count(msg.Content, engine.MediaMarker); n != len(msg.Media) {
			return nil, fmt.Errorf("%w: messages[%d] has %d media items and %d markers %q in its content: want one marker per item, where it goes", engine.ErrInvalidRequest, i, len(msg.Media), n, engine.MediaMarker)
		}
		for j, item := range msg.Media {
			mi, err := m.mediaItem(item)
			if err != nil {
				return nil, fmt.Errorf("%w: messages[%d].media[%d] %v", engine.ErrInvalidRequest, i, j, err)
			}
			media = append(media, mi)
		}
	}
	return media, nil
}

// mediaItem checks item against what the projector takes and decodes it if it is audio.
func (m *model) mediaItem(item engine.Media) (native.Media, error) {
	sound := isAudio(item.Data)
	switch {
	case sound && !m.proj.Audio():
		return native.Media{}, errors.New("is audio, but this model takes images only")
	case !sound && strings.HasPrefix(item.MIME, "audio/"):
		return native.Media{}, fmt.Errorf("is typed %s but is not WAV, MP3 or FLAC data: send one of those", item.MIME)
	case !sound && !m.proj.Vision():
		return native.Media{}, errors.New("is not WAV, MP3 or FLAC audio, and this model takes audio only")
	case !sound:
		return native.Media{Data: item.Data}, nil
	}
	samples, err := m.decodeAudio(item.Data)
	if err != nil {
		return native.Media{}, fmt.Errorf("is audio that cannot be decoded: %v", err)
	}
	return native.Media{Samples: samples}, nil
}

// mediaSense names the sense the first media item of msgs needs: "vision" or "hearing".
func mediaSense(msgs []engine.Message) string {
	for _, msg := range msgs {
		if len(msg.Media) == 0 {
			continue
		}
		if item := msg.Media[0]; isAudio(item.Data) || strings.HasPrefix(item.MIME, "audio/") {
			return "hearing"
		}
		break
	}
	return "vision"
}

func hasMedia(msgs []engine.Message) bool {
	for _, msg := range msgs {
		if len(msg.Media) > 0 {
			return true
		}
	}
	return false
}

// isAudio tells audio from images as mtmd does, by the magic numbers of the formats it decodes
// (miniaudio's WAV, MP3 and FLAC); anything else it takes for an image.
func isAudio(d []byte) bool {
	return len(d) >= 12 && string(d[:4]) == "RIFF" && string(d[8:12]) == "WAVE" ||
		len(d) >= 4 && string(d[:4]) == "fLaC" ||
		len(d) >= 3 && string(d[:3]) == "ID3" ||
		len(d) >= 2 && d[0] == 0xFF && d[1]&0xE0 == 0xE0
}

// decodeAudio decodes a WAV, MP3 or FLAC file to what the projector encodes: mono samples at its
// rate, padded with silence to whole 30-second windows plus one second. mtmd's Whisper
// preprocessor encodes audio in 30-second windows and drops the last one when it is partial
// (it pads only audio shorter than 31 seconds), so 45 seconds of audio would lose their last 15.
func (m *model) decodeAudio(data []byte) ([]float32, error) {
	a, err := audio.Decode(data)
	if err != nil {
		return nil, err
	}
	if a.Frames() == 0 {
		return nil, errors.New("the audio is empty")
	}
	if a.Channels > 1 {
		mono := make([]float32, a.Frames())
		for i := range mono {
			var sum float32
			for _, s := range a.Samples[i*a.Channels : (i+1)*a.Channels] {
				sum += s
			}
			mono[i] = sum / float32(a.Channels)
		}
		a = audio.Audio{Rate: a.Rate, Channels: 1, Samples: mono}
	}
	rate := m.proj.AudioSampleRate()
	samples := audio.Resample(a, rate).Samples
	window := 30 * rate
	padded := (len(samples)+window-1)/window*window + rate
	return append(samples, make([]float32, padded-len(samples))...), nil
}

// tokenizeMedia tokenizes the rendered prompt with its media. The caller frees the result.
func (m *model) tokenizeMedia(prompt string, media []native.Media) (*native.MediaPrompt, error) {
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
	l.emptyCache(s)
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
	// Generation goes on at position pos, the prompt's positions (its KV cells under M-RoPE
	// are more: the sequence length limit counts them).
	for range pos {
		s.tokens = append(s.tokens, mediaPosition)
	}
	s.extraCells = max(r.media.Tokens-pos, 0)
	s.genFrom = time.Now()
	s.res.PromptDuration = s.genFrom.Sub(s.started)
	l.sentTo = append(l.sentTo[:0], r)
	// Eval leaves the logits of the prompt's last token as the context's last output.
	l.accept(s, r.sampler.Sample(l.lctx, -1))
	l.awaitReaders()
}
