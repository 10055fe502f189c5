package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/httpapi/audioapi"
	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// messageAudio is OpenAI's message.audio (and, streamed, delta.audio): the spoken answer.
type messageAudio struct {
	ID         string `json:"id,omitempty"`
	Data       string `json:"data,omitempty"`
	ExpiresAt  int64  `json:"expires_at,omitempty"`
	Transcript string `json:"transcript,omitempty"`
}

// audioMessage is the assistant message of an audio chat.
type audioMessage struct {
	Role    string        `json:"role,omitempty"`
	Content *string       `json:"content"`
	Audio   *messageAudio `json:"audio,omitempty"`
}

type audioChoice struct {
	Index        int           `json:"index"`
	Message      *audioMessage `json:"message,omitempty"`
	Delta        *audioMessage `json:"delta,omitempty"`
	FinishReason *string       `json:"finish_reason"`
}

// chatWithAudio serves a chat whose answer is also spoken (modalities ["text", "audio"]), in
// OpenAI's shape: message.audio holds the speech (base64) and its transcript, content is null.
// Streamed, the transcript arrives as the model writes it and the audio sentence by sentence,
// as each sentence is complete. The speech is its own routed request, so a node without a
// text-to-speech model can answer with a peer's.
func (h *Handler) chatWithAudio(w http.ResponseWriter, r *http.Request, req *chatRequest) {
	speech, err := h.speechRequest(r, req.Audio)
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	preq, err := req.toProto(wire.Routing(r))
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	if req.Stream {
		h.streamChatWithAudio(w, r, preq, speech, req.includeUsage())
		return
	}
	var text strings.Builder
	var final *pb.Final
	var id string
	err = h.inference.StreamChat(r.Context(), preq, func(ev *pb.GenerateResponse) error {
		id = ev.GetId()
		text.WriteString(ev.GetDelta().GetText())
		if f := ev.GetFinal(); f != nil {
			final = f
		}
		return nil
	})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	audio := &messageAudio{ID: "audio_" + id, ExpiresAt: time.Now().Add(time.Hour).Unix(), Transcript: text.String()}
	if strings.TrimSpace(text.String()) != "" {
		speech.Input = text.String()
		data, err := h.synthesizeAll(r.Context(), speech)
		if err != nil {
			wire.WriteStatusError(w, err)
			return
		}
		audio.Data = base64.StdEncoding.EncodeToString(data)
	}
	setServedBy(w, final)
	reason := finishReason(final)
	wire.WriteJSON(w, http.StatusOK, map[string]any{
		"id": "chatcmpl-" + id, "object": "chat.completion", "created": time.Now().Unix(), "model": preq.GetModel(),
		"system_fingerprint": fingerprint, "usage": usageOf(final),
		"choices": []audioChoice{{Message: &audioMessage{Role: "assistant", Audio: audio}, FinishReason: &reason}},
	})
}

// speechRequest checks a chat's audio options and returns the synthesis they ask for, less the
// text.
func (h *Handler) speechRequest(r *http.Request, out *audioOutput) (*pb.SynthesizeRequest, error) {
	if out == nil || out.Format == "" {
		return nil, status.Error(codes.InvalidArgument, `modalities "audio" needs audio: {"voice": ..., "format": "wav" | "mp3" | "flac" | "opus" | "pcm16"}`)
	}
	format := out.Format
	if format == "pcm16" {
		format = "pcm"
	}
	model := out.Model
	if model == "" {
		var err error
		if model, err = h.firstModel(r.Context(), pb.Modality_MODALITY_TEXT_TO_SPEECH); err != nil {
			return nil, err
		}
	}
	return &pb.SynthesizeRequest{Model: model, Voice: audioapi.Voice(out.Voice), Format: format, Routing: wire.Routing(r)}, nil
}

// firstModel names the first usable model of a modality on this node, else in its peers'
// announcements.
func (h *Handler) firstModel(ctx context.Context, modality pb.Modality) (string, error) {
	res, err := h.models.ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		return "", err
	}
	for _, m := range res.GetModels() {
		if m.GetModality() == modality && m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE {
			return m.GetName(), nil
		}
	}
	if peers, err := h.node.ListPeers(ctx, &pb.ListPeersRequest{}); err == nil {
		for _, p := range peers.GetPeers() {
			for _, m := range p.GetCapability().GetModels() {
				if m.GetModality() == modality {
					return m.GetName(), nil
				}
			}
		}
	}
	return "", status.Errorf(codes.NotFound, "no %s model on this node or its peers: declare one (see syn4pse.toml's [backends.%s.*]) or name it in audio.model",
		api.ModalityName(modality), api.ModalityName(modality))
}

// synthesizeAll returns the whole audio of a synthesis.
func (h *Handler) synthesizeAll(ctx context.Context, req *pb.SynthesizeRequest) ([]byte, error) {
	var data []byte
	err := h.inference.Speech().StreamSynthesize(ctx, req, func(ev *pb.SynthesizeResponse) error {
		data = append(data, ev.GetAudio().GetData()...)
		return nil
	})
	return data, err
}

// streamChatWithAudio streams the transcript as the model writes it and the speech, sentence
// by sentence, as each sentence is complete (package speech's ChatAloud). Like a text stream, it
// names the serving node in Syn4pse-Served-By and ends with the usage (in its own chunk when
// includeUsage, else in the last).
func (h *Handler) streamChatWithAudio(w http.ResponseWriter, r *http.Request, req *pb.ChatRequest, speech *pb.SynthesizeRequest, includeUsage bool) {
	s := &sseStream{Events: wire.Events{W: w}}
	var mu sync.Mutex // text and audio come from two goroutines
	created := time.Now().Unix()
	id := newChunkID()
	audioID := "audio_" + id
	servedBy := "" // the text's node, known with the first piece (before any audio)
	write := func(delta *audioMessage, reason *string, u *usage) error {
		mu.Lock()
		defer mu.Unlock()
		if !s.Started {
			s.Start(servedBy)
			if err := s.Write(audioChunkObject(id, created, req.GetModel(), &audioMessage{Role: "assistant"}, nil, nil)); err != nil {
				return err
			}
		}
		return s.Write(audioChunkObject(id, created, req.GetModel(), delta, reason, u))
	}
	chunk := func(delta *audioMessage, reason *string) error { return write(delta, reason, nil) }
	aloud, err := h.inference.Speech().ChatAloud(r.Context(), req, speech, time.Now(),
		func(text, by string) error {
			mu.Lock()
			if servedBy == "" {
				servedBy = by
			}
			mu.Unlock()
			return chunk(&audioMessage{Audio: &messageAudio{ID: audioID, Transcript: text}}, nil)
		},
		func(a *pb.AudioChunk) error {
			return chunk(&audioMessage{Audio: &messageAudio{ID: audioID, Data: base64.StdEncoding.EncodeToString(a.GetData())}}, nil)
		})
	switch {
	case err != nil || s.Failed:
		s.Fail(err)
	default:
		reason := finishReason(aloud.Final)
		if servedBy == "" {
			servedBy = aloud.Final.GetServedBy()
		}
		last := &audioMessage{Audio: &messageAudio{ID: audioID, ExpiresAt: time.Now().Add(time.Hour).Unix()}}
		var err error
		if includeUsage {
			if err = write(last, &reason, nil); err == nil {
				err = write(nil, nil, usageOf(aloud.Final))
			}
		} else {
			err = write(last, &reason, usageOf(aloud.Final))
		}
		if err == nil {
			s.WriteRaw([]byte("data: [DONE]\n\n"))
		}
	}
}

// audioChunkObject is one chunk of a streamed audio chat; a nil delta makes OpenAI's usage
// chunk, with empty choices.
func audioChunkObject(id string, created int64, model string, delta *audioMessage, reason *string, u *usage) map[string]any {
	obj := map[string]any{"id": "chatcmpl-" + id, "object": "chat.completion.chunk", "created": created,
		"model": model, "system_fingerprint": fingerprint, "choices": []audioChoice{}}
	if delta != nil {
		obj["choices"] = []audioChoice{{Delta: delta, FinishReason: reason}}
	}
	if u != nil {
		obj["usage"] = u
	}
	return obj
}

// newChunkID names a streamed audio chat (the chat's own id arrives with its first event, after
// the stream may have started).
func newChunkID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
