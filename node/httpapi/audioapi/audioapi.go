// Package audioapi serves the OpenAI-compatible audio routes of the HTTP API:
// POST /v1/audio/transcriptions and POST /v1/audio/speech, over the node's speech service.
// Package httpapi registers them on its mux.
package audioapi

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/internal/audio"
	"github.com/ekisa-team/syn4pse/node/api/speech"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Handler serves the audio routes.
type Handler struct {
	// Service runs the transcriptions and syntheses, where the router says.
	Service *speech.Service
	// MaxRequestBody bounds a JSON request body (server.max_request_body); 0 is the default.
	MaxRequestBody int64
}

// maxUploadBytes bounds an uploaded audio file by server.max_audio: that long of the largest
// common uncompressed audio (48 kHz 16-bit stereo WAV), plus 1 MiB for the form's other fields.
// Longer audio would be refused once decoded anyway. (OpenAI's limit is 25 MB; local nodes take
// longer recordings.)
func (h *Handler) maxUploadBytes() int64 {
	const bytesPerSecond = 48000 * 2 * 2
	return int64(cmp.Or(h.Service.MaxAudio, speech.DefaultMaxAudio).Seconds()*bytesPerSecond) + 1<<20
}

// transcriptionForm is the multipart form of POST /v1/audio/transcriptions.
type transcriptionForm struct {
	file           []byte
	model          string
	language       string
	prompt         string
	responseFormat string
	temperature    *float32
	granularities  []string
	stream         bool
}

// Transcriptions serves POST /v1/audio/transcriptions (OpenAI's shape).
func (h *Handler) Transcriptions(w http.ResponseWriter, r *http.Request) {
	form, err := readTranscriptionForm(w, r, h.maxUploadBytes())
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	buf := speech.NewAudioBuffer()
	buf.Add(form.file)
	buf.End(io.EOF)
	cfg := &pb.TranscribeConfig{Model: form.model, Language: form.language, Prompt: form.prompt,
		Temperature: form.temperature, Routing: wire.Routing(r)}
	if form.stream {
		h.streamTranscription(w, r, cfg, buf)
		return
	}
	var final *pb.TranscribeFinal
	err = h.Service.StreamTranscribe(r.Context(), cfg, buf, func(ev *pb.TranscribeResponse) error {
		if f := ev.GetFinal(); f != nil {
			final = f
		}
		return nil
	})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	if id := final.GetServedBy(); id != "" {
		w.Header().Set("Syn4pse-Served-By", id)
	}
	writeTranscript(w, form, final)
}

func readTranscriptionForm(w http.ResponseWriter, r *http.Request, limit int64) (*transcriptionForm, error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	form, err := readMultipart(r)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		slog.Warn("request refused: over a limit", "route", r.Method+" "+r.URL.Path, "limit_key", "server.max_audio",
			"limit", config.FormatSize(limit), "remote", r.RemoteAddr)
		return nil, status.Errorf(codes.OutOfRange, "the upload is larger than %s, the size of server.max_audio of 48 kHz stereo WAV: "+
			"send a shorter or compressed recording, or raise server.max_audio (env SYN4PSE_SERVER_MAX_AUDIO) on the node", config.FormatSize(limit))
	}
	return form, err
}

// readMultipart reads the transcription form; a body over the limit is an *http.MaxBytesError.
func readMultipart(r *http.Request) (*transcriptionForm, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "send multipart/form-data with a file field (the audio) and a model field")
	}
	form := &transcriptionForm{responseFormat: "json"}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, formError(err)
		}
		if err := form.read(part); err != nil {
			return nil, err
		}
	}
	return form, form.check()
}

func formError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return err
	}
	return status.Errorf(codes.InvalidArgument, "the multipart form is malformed: %v", err)
}

// read takes one field of the form.
func (f *transcriptionForm) read(part *multipart.Part) error {
	defer part.Close()
	data, err := io.ReadAll(part)
	if err != nil {
		return formError(err)
	}
	value := strings.TrimSpace(string(data))
	switch part.FormName() {
	case "file":
		f.file = data
	case "model":
		f.model = value
	case "language":
		f.language = value
	case "prompt":
		f.prompt = value
	case "response_format":
		f.responseFormat = value
	case "temperature":
		t, err := strconv.ParseFloat(value, 32)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "temperature %q: want a number from 0 to 1", value)
		}
		t32 := float32(t)
		f.temperature = &t32
	case "timestamp_granularities[]", "timestamp_granularities":
		f.granularities = append(f.granularities, value)
	case "stream":
		f.stream = value == "true" || value == "1"
	}
	return nil
}

func (f *transcriptionForm) check() error {
	switch {
	case len(f.file) == 0:
		return status.Error(codes.InvalidArgument, "file is missing or empty: send the audio (WAV, MP3 or FLAC) as the file field")
	case f.model == "":
		return status.Error(codes.InvalidArgument, "model is missing: name a speech-to-text model (GET /v1/models lists them with their kind)")
	case !slices.Contains([]string{"json", "text", "verbose_json", "srt", "vtt"}, f.responseFormat):
		return status.Errorf(codes.InvalidArgument, "response_format %q: want json, text, verbose_json, srt or vtt", f.responseFormat)
	}
	for _, g := range f.granularities {
		if g != "word" && g != "segment" {
			return status.Errorf(codes.InvalidArgument, "timestamp_granularities %q: want word or segment", g)
		}
	}
	return nil
}

// writeTranscript answers in the response format asked for.
func writeTranscript(w http.ResponseWriter, form *transcriptionForm, final *pb.TranscribeFinal) {
	switch form.responseFormat {
	case "text":
		writeText(w, "text/plain; charset=utf-8", final.GetText()+"\n")
	case "srt":
		writeText(w, "application/x-subrip; charset=utf-8", subtitles(final.GetSegments(), false))
	case "vtt":
		writeText(w, "text/vtt; charset=utf-8", subtitles(final.GetSegments(), true))
	case "verbose_json":
		wire.WriteJSON(w, http.StatusOK, verboseTranscript(final, slices.Contains(form.granularities, "word"),
			len(form.granularities) == 0 || slices.Contains(form.granularities, "segment")))
	default:
		wire.WriteJSON(w, http.StatusOK, map[string]any{"text": final.GetText(), "usage": transcriptUsage(final)})
	}
}

func writeText(w http.ResponseWriter, contentType, text string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, text)
}

// transcriptUsage is OpenAI's usage of a transcription billed by duration.
func transcriptUsage(final *pb.TranscribeFinal) map[string]any {
	return map[string]any{"type": "duration", "seconds": final.GetDurationSeconds()}
}

type verboseSegment struct {
	ID               int32   `json:"id"`
	Seek             int     `json:"seek"`
	Start            float64 `json:"start"`
	End              float64 `json:"end"`
	Text             string  `json:"text"`
	Tokens           []int   `json:"tokens"`
	Temperature      float64 `json:"temperature"`
	AvgLogprob       float64 `json:"avg_logprob"`
	CompressionRatio float64 `json:"compression_ratio"`
	NoSpeechProb     float64 `json:"no_speech_prob"`
}

type verboseWord struct {
	Word  string  `json:"word"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// verboseTranscript is OpenAI's verbose_json: the text with segments and, when asked, words.
func verboseTranscript(final *pb.TranscribeFinal, words, segments bool) map[string]any {
	out := map[string]any{"task": "transcribe", "language": languageName(final.GetLanguage()),
		"duration": final.GetDurationSeconds(), "text": final.GetText(), "usage": transcriptUsage(final)}
	if segments {
		list := []verboseSegment{}
		for _, s := range final.GetSegments() {
			list = append(list, verboseSegment{ID: s.GetId(), Start: s.GetStart(), End: s.GetEnd(), Text: s.GetText(), Tokens: []int{}})
		}
		out["segments"] = list
	}
	if words {
		list := []verboseWord{}
		for _, s := range final.GetSegments() {
			for _, wd := range s.GetWords() {
				list = append(list, verboseWord{Word: wd.GetWord(), Start: wd.GetStart(), End: wd.GetEnd()})
			}
		}
		out["words"] = list
	}
	return out
}

// languageName is the language as OpenAI's verbose_json names it ("english"), the tag itself
// for languages not listed.
func languageName(tag string) string {
	names := map[string]string{"en": "english", "es": "spanish", "fr": "french", "de": "german", "it": "italian", "pt": "portuguese"}
	base, _, _ := strings.Cut(strings.ToLower(tag), "-")
	if name, ok := names[base]; ok {
		return name
	}
	return tag
}

// subtitles writes the segments as SubRip (srt) or WebVTT.
func subtitles(segments []*pb.TranscriptSegment, vtt bool) string {
	var b strings.Builder
	if vtt {
		b.WriteString("WEBVTT\n\n")
	}
	for i, s := range segments {
		if !vtt {
			fmt.Fprintf(&b, "%d\n", i+1)
		}
		fmt.Fprintf(&b, "%s --> %s\n%s\n\n", timestamp(s.GetStart(), vtt), timestamp(s.GetEnd(), vtt), s.GetText())
	}
	return b.String()
}

// timestamp is 00:01:02,345 (srt) or 00:01:02.345 (vtt).
func timestamp(seconds float64, vtt bool) string {
	ms := int64(seconds*1000 + 0.5)
	sep := ","
	if vtt {
		sep = "."
	}
	return fmt.Sprintf("%02d:%02d:%02d%s%03d", ms/3600000, ms/60000%60, ms/1000%60, sep, ms%1000)
}

// streamTranscription answers stream=true as OpenAI does: transcript.text.delta events, one per
// utterance heard, then transcript.text.done.
func (h *Handler) streamTranscription(w http.ResponseWriter, r *http.Request, cfg *pb.TranscribeConfig, buf *speech.AudioBuffer) {
	s := &wire.Events{W: w}
	first := true
	err := h.Service.StreamTranscribe(r.Context(), cfg, buf, func(ev *pb.TranscribeResponse) error {
		if !s.Started {
			s.Start(ev.GetServedBy())
		}
		if seg := ev.GetSegment(); seg != nil && seg.GetText() != "" {
			delta := seg.GetText()
			if !first {
				delta = " " + delta
			}
			first = false
			return s.Write(map[string]any{"type": "transcript.text.delta", "delta": delta})
		}
		if f := ev.GetFinal(); f != nil {
			return s.Write(map[string]any{"type": "transcript.text.done", "text": f.GetText(), "usage": transcriptUsage(f)})
		}
		return nil
	})
	s.Fail(err)
}

// speechRequest is the body of POST /v1/audio/speech.
type speechRequest struct {
	Model          string   `json:"model"`
	Input          string   `json:"input"`
	Voice          string   `json:"voice"`
	ResponseFormat string   `json:"response_format"`
	Speed          *float32 `json:"speed"`
	// StreamFormat is "audio" (the bytes, streamed as they are made) or "sse" (base64 events).
	StreamFormat string `json:"stream_format"`
	// Instructions steer a voice in OpenAI's newest models; these engines take none.
	Instructions string `json:"instructions"`
}

// openAIVoices are OpenAI's voice names. Clients built for OpenAI must send one, so each means
// the model's default voice here.
var openAIVoices = []string{"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin", "cedar"}

// Voice is the model's voice for the one a request names: OpenAI's names are the model's
// default voice ("").
func Voice(name string) string {
	if slices.Contains(openAIVoices, strings.ToLower(name)) {
		return ""
	}
	return name
}

// Speech serves POST /v1/audio/speech: the audio streams as each sentence is synthesized.
func (h *Handler) Speech(w http.ResponseWriter, r *http.Request) {
	var body speechRequest
	if !wire.Decode(w, r, h.MaxRequestBody, &body) {
		return
	}
	req := &pb.SynthesizeRequest{Model: body.Model, Input: body.Input, Voice: Voice(body.Voice), Format: speechFormat(body.ResponseFormat), Routing: wire.Routing(r)}
	if body.Speed != nil {
		req.Speed = *body.Speed
	}
	switch body.StreamFormat {
	case "", "audio":
		h.streamSpeech(w, r, req)
	case "sse":
		h.streamSpeechEvents(w, r, req)
	default:
		wire.WriteError(w, http.StatusBadRequest, "invalid_request_error", "", fmt.Sprintf("stream_format %q: want audio or sse", body.StreamFormat))
	}
}

// speechFormat is the format asked for, or OpenAI's default, mp3, when this node can encode it
// (its encoder, lame, is a separate program), else wav.
func speechFormat(format string) string {
	if format != "" {
		return format
	}
	if slices.Contains(audio.Formats(), "mp3") {
		return "mp3"
	}
	return "wav"
}

func (h *Handler) streamSpeech(w http.ResponseWriter, r *http.Request, req *pb.SynthesizeRequest) {
	started, failed := false, false
	err := h.Service.StreamSynthesize(r.Context(), req, func(ev *pb.SynthesizeResponse) error {
		chunk := ev.GetAudio()
		if chunk == nil {
			return nil
		}
		if !started {
			started = true
			w.Header().Set("Content-Type", audio.ContentType(req.GetFormat()))
			if id := ev.GetServedBy(); id != "" {
				w.Header().Set("Syn4pse-Served-By", id)
			}
			w.WriteHeader(http.StatusOK)
		}
		if _, err := w.Write(chunk.GetData()); err != nil {
			failed = true
			return err
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			failed = true
			return err
		}
		return nil
	})
	switch {
	case err != nil && !started:
		wire.WriteStatusError(w, err)
	case err != nil && !failed:
		// The status went out with the first audio: all that is left is to cut the stream.
		slog.WarnContext(r.Context(), "speech stream ended early", "model", req.GetModel(), "err", err)
		panic(http.ErrAbortHandler)
	}
}

// streamSpeechEvents answers stream_format=sse: speech.audio.delta events with base64 audio,
// then speech.audio.done.
func (h *Handler) streamSpeechEvents(w http.ResponseWriter, r *http.Request, req *pb.SynthesizeRequest) {
	s := &wire.Events{W: w}
	err := h.Service.StreamSynthesize(r.Context(), req, func(ev *pb.SynthesizeResponse) error {
		if !s.Started {
			s.Start(ev.GetServedBy())
		}
		if chunk := ev.GetAudio(); chunk != nil {
			return s.Write(map[string]any{"type": "speech.audio.delta", "audio": base64.StdEncoding.EncodeToString(chunk.GetData())})
		}
		return s.Write(map[string]any{"type": "speech.audio.done", "usage": map[string]any{
			"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}})
	})
	s.Fail(err)
}
