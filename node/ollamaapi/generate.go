package ollamaapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	ollama "github.com/ollama/ollama/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/api"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// options are the Ollama options the node's sampler reads. The runner options (num_ctx,
// num_batch, num_gpu, num_thread, ...) are ignored: a model's context and placement come from its
// declaration in syn4pse.toml, not from a request.
type options struct {
	Temperature      *float32 `json:"temperature"`
	TopK             *int32   `json:"top_k"`
	TopP             *float32 `json:"top_p"`
	MinP             *float32 `json:"min_p"`
	Seed             *int64   `json:"seed"`
	NumPredict       *int32   `json:"num_predict"`
	Stop             []string `json:"stop"`
	RepeatPenalty    *float32 `json:"repeat_penalty"`
	RepeatLastN      *int32   `json:"repeat_last_n"`
	PresencePenalty  *float32 `json:"presence_penalty"`
	FrequencyPenalty *float32 `json:"frequency_penalty"`
}

// sampling converts a request's options; num_predict below 0 (Ollama's "no limit") sets none.
func sampling(raw map[string]any) (*pb.SamplingParams, error) {
	var o options
	if len(raw) > 0 {
		b, err := json.Marshal(raw)
		if err == nil {
			err = json.Unmarshal(b, &o)
		}
		if err != nil {
			return nil, invalid("options: %v", err)
		}
	}
	sp := &pb.SamplingParams{Temperature: o.Temperature, TopK: o.TopK, TopP: o.TopP, MinP: o.MinP, Stop: o.Stop,
		RepeatPenalty: o.RepeatPenalty, RepeatLastN: o.RepeatLastN, PresencePenalty: o.PresencePenalty, FrequencyPenalty: o.FrequencyPenalty}
	if o.Seed != nil && *o.Seed >= 0 {
		seed := uint32(*o.Seed)
		sp.Seed = &seed
	}
	if o.NumPredict != nil && *o.NumPredict >= 0 {
		sp.MaxTokens = o.NumPredict
	}
	return sp, nil
}

// responseFormat reads Ollama's format: "json" or a JSON schema.
func responseFormat(raw json.RawMessage) (*pb.ResponseFormat, error) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "" || s == "null" || s == `""`:
		return nil, nil
	case s == `"json"`:
		return &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_OBJECT}, nil
	case strings.HasPrefix(s, "{"):
		return &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_SCHEMA, JsonSchema: s}, nil
	}
	return nil, invalid(`format %s: want "json" or a JSON schema object`, s)
}

// keepAlive is Ollama's keep_alive as the service reads it; negative keeps the model loaded.
func keepAlive(d *ollama.Duration) string {
	switch {
	case d == nil:
		return ""
	case d.Duration < 0:
		return "-1"
	}
	return d.Duration.String()
}

// imageParts are a message's base64 images as content parts.
func imageParts(images []ollama.ImageData) []*pb.ContentPart {
	parts := make([]*pb.ContentPart, len(images))
	for i, img := range images {
		parts[i] = &pb.ContentPart{Part: &pb.ContentPart_Image{Image: &pb.Media{Data: img, MimeType: http.DetectContentType(img)}}}
	}
	return parts
}

func message(role, content string, images []ollama.ImageData) *pb.Message {
	msg := &pb.Message{Role: role, Content: content}
	if len(images) > 0 {
		msg.Parts = append([]*pb.ContentPart{{Part: &pb.ContentPart_Text{Text: content}}}, imageParts(images)...)
		msg.Content = ""
	}
	return msg
}

func routing(r *http.Request) *pb.Routing {
	node := r.Header.Get("Syn4pse-Node")
	local := strings.EqualFold(r.Header.Get("Syn4pse-Local-Only"), "true")
	if node == "" && !local {
		return nil
	}
	return &pb.Routing{Node: node, LocalOnly: local}
}

func (h *Handler) chat(w http.ResponseWriter, r *http.Request) {
	var req ollama.ChatRequest
	if !h.decodeJSON(w, r, &req) {
		return
	}
	if len(req.Messages) == 0 {
		h.loadOnly(w, r, req.Model, req.KeepAlive, func(reason string) any {
			return ollama.ChatResponse{Model: req.Model, CreatedAt: time.Now().UTC(), Message: ollama.Message{Role: "assistant"}, Done: true, DoneReason: reason}
		})
		return
	}
	sp, err := sampling(req.Options)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	rf, err := responseFormat(req.Format)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	preq := &pb.ChatRequest{Model: req.Model, Sampling: sp, ResponseFormat: rf, Routing: routing(r), KeepAlive: keepAlive(req.KeepAlive)}
	if preq.Tools, err = tools(req.Tools); err != nil {
		writeStatusError(w, status.Error(codes.InvalidArgument, err.Error()))
		return
	}
	for i, m := range req.Messages {
		msg := message(m.Role, m.Content, m.Images)
		if msg.ToolCalls, err = toolCalls(m.ToolCalls); err != nil {
			writeStatusError(w, status.Errorf(codes.InvalidArgument, "messages[%d].%v", i, err))
			return
		}
		msg.ToolCallId = m.ToolCallID
		preq.Messages = append(preq.Messages, msg)
	}
	run := func(ctx context.Context, send api.Sender) error { return h.inference.StreamChat(ctx, preq, send) }
	serve(w, r, req.Stream, run, func(text string, final *pb.Final, m ollama.Metrics) any {
		// The calls come whole, with the last event, as Ollama sends them.
		return ollama.ChatResponse{Model: req.Model, CreatedAt: time.Now().UTC(),
			Message: ollama.Message{Role: "assistant", Content: text, ToolCalls: ollamaToolCalls(final.GetToolCalls())},
			Done:    final != nil, DoneReason: doneReason(final), Metrics: m}
	})
}

// generate serves /api/generate: the prompt goes through the model's chat template (with system
// and images), as Ollama does; raw sends it as it is.
func (h *Handler) generate(w http.ResponseWriter, r *http.Request) {
	var req ollama.GenerateRequest
	if !h.decodeJSON(w, r, &req) {
		return
	}
	if req.Prompt == "" && len(req.Images) == 0 {
		h.loadOnly(w, r, req.Model, req.KeepAlive, func(reason string) any {
			return ollama.GenerateResponse{Model: req.Model, CreatedAt: time.Now().UTC(), Done: true, DoneReason: reason}
		})
		return
	}
	sp, err := sampling(req.Options)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	rf, err := responseFormat(req.Format)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	var run func(context.Context, api.Sender) error
	if req.Raw {
		preq := &pb.CompleteRequest{Model: req.Model, Prompt: req.Prompt, Sampling: sp, ResponseFormat: rf, Routing: routing(r), KeepAlive: keepAlive(req.KeepAlive)}
		run = func(ctx context.Context, send api.Sender) error { return h.inference.StreamComplete(ctx, preq, send) }
	} else {
		preq := &pb.ChatRequest{Model: req.Model, Sampling: sp, ResponseFormat: rf, Routing: routing(r), KeepAlive: keepAlive(req.KeepAlive)}
		if req.System != "" {
			preq.Messages = append(preq.Messages, &pb.Message{Role: "system", Content: req.System})
		}
		preq.Messages = append(preq.Messages, message("user", req.Prompt, req.Images))
		run = func(ctx context.Context, send api.Sender) error { return h.inference.StreamChat(ctx, preq, send) }
	}
	serve(w, r, req.Stream, run, func(text string, final *pb.Final, m ollama.Metrics) any {
		return ollama.GenerateResponse{Model: req.Model, CreatedAt: time.Now().UTC(), Response: text,
			Done: final != nil, DoneReason: doneReason(final), Metrics: m}
	})
}

// loadOnly serves a request with no prompt, Ollama's way to load a model (or, with keep_alive
// 0, to unload it).
func (h *Handler) loadOnly(w http.ResponseWriter, r *http.Request, model string, ka *ollama.Duration, response func(reason string) any) {
	if ka != nil && ka.Duration == 0 {
		if _, err := h.models.UnloadModel(r.Context(), &pb.UnloadModelRequest{Name: model}); err != nil {
			writeStatusError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, response("unload"))
		return
	}
	if _, err := h.models.LoadModel(r.Context(), &pb.LoadModelRequest{Name: model, KeepAlive: keepAlive(ka)}); err != nil {
		writeStatusError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, response("load"))
}

// serve runs a generation and answers it as NDJSON (Ollama's default) or, with stream false, as
// one object; shape builds a response from text, the final event (nil before the end) and metrics.
func serve(w http.ResponseWriter, r *http.Request, stream *bool, run func(context.Context, api.Sender) error,
	shape func(text string, final *pb.Final, m ollama.Metrics) any) {
	start := time.Now()
	if stream == nil || *stream {
		s := &ndjson{w: w}
		err := run(r.Context(), func(ev *pb.GenerateResponse) error {
			if d := ev.GetDelta(); d != nil && d.GetText() != "" {
				return s.send(shape(d.GetText(), nil, ollama.Metrics{}))
			}
			if f := ev.GetFinal(); f != nil {
				return s.send(shape("", f, metrics(f, start)))
			}
			return nil
		})
		s.finish(err)
		return
	}
	var (
		text  strings.Builder
		final *pb.Final
	)
	err := run(r.Context(), func(ev *pb.GenerateResponse) error {
		text.WriteString(ev.GetDelta().GetText())
		if f := ev.GetFinal(); f != nil {
			final = f
		}
		return nil
	})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	if final == nil {
		final = &pb.Final{}
	}
	writeJSON(w, http.StatusOK, shape(text.String(), final, metrics(final, start)))
}

// metrics are Ollama's timings from our final event. Ollama's load_duration is the wait before
// the prompt is read (a model load, or a place in the queue): our queue time.
func metrics(f *pb.Final, start time.Time) ollama.Metrics {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	return ollama.Metrics{
		TotalDuration:      time.Since(start),
		LoadDuration:       ms(f.GetTimings().GetQueueMs()),
		PromptEvalCount:    int(f.GetUsage().GetPromptTokens()),
		PromptEvalDuration: ms(f.GetTimings().GetPromptMs()),
		EvalCount:          int(f.GetUsage().GetCompletionTokens()),
		EvalDuration:       ms(f.GetTimings().GetGenerationMs()),
	}
}

func doneReason(f *pb.Final) string {
	switch {
	case f == nil:
		return ""
	case f.GetFinishReason() == pb.FinishReason_FINISH_REASON_LENGTH:
		return "length"
	case f.GetFinishReason() == pb.FinishReason_FINISH_REASON_TOOL_CALLS:
		return "stop" // Ollama ends a turn of tool calls with "stop"
	}
	return "stop"
}
