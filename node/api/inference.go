// Package api implements SYN4PSE's gRPC services (package syn4pse.v1). The same implementation
// serves gRPC clients on TCP and, through an adapter, the HTTP API.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"math"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"google.golang.org/grpc"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/api/internal/request"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/router"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// InferenceService implements pb.InferenceServiceServer over the node's models and, through the
// router, the mesh's.
type InferenceService struct {
	pb.UnimplementedInferenceServiceServer
	Models *models.Manager
	// NodeID names this node in served_by.
	NodeID string
	// Router picks the node that serves a request; nil serves everything here.
	Router *router.Router
	// MaxAudio bounds the duration of the audio a request sends (server.max_audio); 0 is
	// speech.DefaultMaxAudio.
	MaxAudio time.Duration
	// Limits bound each request (server.max_tokens, server.max_messages,
	// server.max_prompt_bytes); zero fields are the defaults.
	Limits config.Limits
}

// Sender receives the events of a generation stream, in order: the router's, so a stream passes
// from the transports through the router to the engine unconverted.
type Sender = router.Sender

// Chat implements pb.InferenceServiceServer.
func (s *InferenceService) Chat(req *pb.ChatRequest, stream grpc.ServerStreamingServer[pb.GenerateResponse]) error {
	return s.StreamChat(stream.Context(), req, stream.Send)
}

// Complete implements pb.InferenceServiceServer.
func (s *InferenceService) Complete(req *pb.CompleteRequest, stream grpc.ServerStreamingServer[pb.GenerateResponse]) error {
	return s.StreamComplete(stream.Context(), req, stream.Send)
}

// StreamChat runs a chat request where the router says and sends its events; errors are gRPC
// status errors.
func (s *InferenceService) StreamChat(ctx context.Context, req *pb.ChatRequest, send Sender) error {
	if err := s.checkChat(ctx, req); err != nil {
		return err
	}
	if s.Router == nil {
		return s.localChat(ctx, req, send)
	}
	return request.Status(s.Router.Chat(ctx, req, send, s.localChat))
}

// StreamComplete runs a completion request where the router says and sends its events.
func (s *InferenceService) StreamComplete(ctx context.Context, req *pb.CompleteRequest, send Sender) error {
	if err := s.checkComplete(ctx, req); err != nil {
		return err
	}
	if s.Router == nil {
		return s.localComplete(ctx, req, send)
	}
	return request.Status(s.Router.Complete(ctx, req, send, s.localComplete))
}

// localChat runs a chat request on this node.
func (s *InferenceService) localChat(ctx context.Context, req *pb.ChatRequest, send Sender) error {
	if len(req.GetMessages()) == 0 {
		return request.Invalid("messages is empty: send at least one message")
	}
	msgs := make([]engine.Message, len(req.GetMessages()))
	for i, m := range req.GetMessages() {
		msgs[i] = engine.Message{Role: m.GetRole(), Content: m.GetContent(), Name: m.GetName(), ToolCallID: m.GetToolCallId()}
		for _, c := range m.GetToolCalls() {
			msgs[i].ToolCalls = append(msgs[i].ToolCalls, engine.ToolCall{ID: c.GetId(), Name: c.GetName(), Arguments: c.GetArguments()})
		}
		if len(m.GetParts()) > 0 {
			msgs[i].Content = ""
			for _, p := range m.GetParts() {
				switch part := p.GetPart().(type) {
				case *pb.ContentPart_Text:
					msgs[i].Content += part.Text
				case *pb.ContentPart_Image:
					msgs[i].Content += engine.MediaMarker
					msgs[i].Media = append(msgs[i].Media, engine.Media{Data: part.Image.GetData(), MIME: part.Image.GetMimeType()})
				case *pb.ContentPart_Audio:
					msgs[i].Content += engine.MediaMarker
					msgs[i].Media = append(msgs[i].Media, engine.Media{Data: part.Audio.GetData(), MIME: part.Audio.GetMimeType()})
				}
			}
		}
	}
	gen := engine.GenerateRequest{Messages: msgs, ContinueFinal: req.GetContinueFinalMessage()}
	if err := applyTools(&gen, req.GetTools(), req.GetToolChoice()); err != nil {
		return err
	}
	return s.generate(ctx, req.GetModel(), req.GetKeepAlive(), gen, req.GetSampling(), req.GetResponseFormat(), send)
}

// localComplete runs a completion request on this node.
func (s *InferenceService) localComplete(ctx context.Context, req *pb.CompleteRequest, send Sender) error {
	if req.GetPrompt() == "" {
		return request.Invalid("prompt is empty")
	}
	gen := engine.GenerateRequest{Prompt: req.GetPrompt()}
	return s.generate(ctx, req.GetModel(), req.GetKeepAlive(), gen, req.GetSampling(), req.GetResponseFormat(), send)
}

func (s *InferenceService) generate(ctx context.Context, model, keepAliveText string, gen engine.GenerateRequest, sp *pb.SamplingParams, rf *pb.ResponseFormat, send Sender) error {
	if model == "" {
		return request.Invalid("model is empty: name a model (syn4pse models list shows them)")
	}
	keepAlive, err := request.KeepAlive(keepAliveText)
	if err != nil {
		return err
	}
	if err := applySampling(&gen, sp); err != nil {
		return err
	}
	s.clampTokens(ctx, &gen)
	if err := applyFormat(&gen, rf); err != nil {
		return err
	}
	lease, err := s.Models.Acquire(ctx, model, keepAlive)
	if err != nil {
		return request.Status(err)
	}
	defer lease.Release()
	c := choices{llm: lease.LLM(), id: newID(), model: model, servedBy: s.NodeID, send: send}
	n := max(int(sp.GetN()), 1)
	if n == 1 {
		return c.run(ctx, 0, gen, s.final)
	}
	// The choices are concurrent requests of the same prompt: the engine batches them, and
	// the prompt's cache is reused. The first to fail cancels the others.
	var mu sync.Mutex
	c.send = func(ev *pb.GenerateResponse) error {
		mu.Lock()
		defer mu.Unlock()
		return send(ev)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i := range n {
		g.Go(func() error {
			gi := gen
			if sp.Seed != nil {
				gi.Sampling.Seed = sp.GetSeed() + uint32(i)
			}
			return c.run(gctx, i, gi, s.final)
		})
	}
	return g.Wait()
}

// choices runs the generations of one request and sends their events.
type choices struct {
	llm                 engine.LLM
	id, model, servedBy string
	send                Sender
}

// run generates choice index and sends its deltas, then its Final.
func (c *choices) run(ctx context.Context, index int, gen engine.GenerateRequest, final func(engine.GenerateResult) *pb.Final) error {
	event := func(d *pb.Delta) error {
		d.Index = int32(index)
		return c.send(&pb.GenerateResponse{Id: c.id, Model: c.model, ServedBy: c.servedBy, Event: &pb.GenerateResponse_Delta{Delta: d}})
	}
	if gen.ToolsActive() {
		gen.OnToolCall = func(d engine.ToolCallDelta) error {
			return event(&pb.Delta{ToolCalls: []*pb.ToolCallDelta{{Index: int32(d.Index), Id: d.ID, Name: d.Name, Arguments: d.Arguments}}})
		}
	}
	// Log-probabilities wait for the next text delta, which carries them.
	var lps []*pb.TokenLogprob
	if gen.Logprobs {
		gen.OnToken = func(lp engine.TokenLogprob) error {
			lps = append(lps, tokenLogprobProto(lp))
			return nil
		}
	}
	// The count of generated tokens goes with each delta, for a forwarding node that has to
	// continue the stream elsewhere should this node fail.
	generated := 0
	gen.OnCount = func(n int) { generated = n }
	res, err := c.llm.Generate(ctx, gen, func(text string) error {
		d := &pb.Delta{Text: text, Logprobs: lps, CompletionTokens: int32(generated)}
		lps = nil
		return event(d)
	})
	if err != nil {
		if ctx.Err() != nil {
			slog.DebugContext(ctx, "generation cancelled", "model", c.model, "id", c.id, "tokens", res.CompletionTokens)
		}
		return request.Status(err)
	}
	if len(lps) > 0 {
		// Tokens whose text a stop string or a tool call took.
		if err := event(&pb.Delta{Logprobs: lps}); err != nil {
			return err
		}
	}
	f := final(res)
	f.Index = int32(index)
	return c.send(&pb.GenerateResponse{Id: c.id, Model: c.model, ServedBy: c.servedBy, Event: &pb.GenerateResponse_Final{Final: f}})
}

func tokenLogprobProto(lp engine.TokenLogprob) *pb.TokenLogprob {
	out := &pb.TokenLogprob{Token: lp.Token, Bytes: lp.Bytes, Logprob: lp.Logprob}
	for _, t := range lp.Top {
		out.TopLogprobs = append(out.TopLogprobs, &pb.TopLogprob{Token: t.Token, Bytes: t.Bytes, Logprob: t.Logprob})
	}
	return out
}

func (s *InferenceService) final(res engine.GenerateResult) *pb.Final {
	reason := pb.FinishReason_FINISH_REASON_STOP
	switch res.FinishReason {
	case engine.FinishLength:
		reason = pb.FinishReason_FINISH_REASON_LENGTH
	case engine.FinishToolCalls:
		reason = pb.FinishReason_FINISH_REASON_TOOL_CALLS
	}
	var calls []*pb.ToolCall
	for _, c := range res.ToolCalls {
		calls = append(calls, &pb.ToolCall{Id: c.ID, Name: c.Name, Arguments: c.Arguments})
	}
	return &pb.Final{
		ToolCalls:    calls,
		FinishReason: reason,
		Usage: &pb.Usage{
			PromptTokens:       int32(res.PromptTokens),
			CompletionTokens:   int32(res.CompletionTokens),
			TotalTokens:        int32(res.PromptTokens + res.CompletionTokens),
			CachedPromptTokens: int32(res.CachedPromptTokens),
		},
		Timings: &pb.Timings{
			QueueMs:                   request.Millis(res.QueueDuration),
			PromptMs:                  request.Millis(res.PromptDuration),
			GenerationMs:              request.Millis(res.GenerateDuration),
			PromptTokensPerSecond:     rate(res.PromptTokens-res.CachedPromptTokens, res.PromptDuration),
			GenerationTokensPerSecond: rate(res.CompletionTokens, res.GenerateDuration),
		},
		ServedBy: s.NodeID,
	}
}

// applyTools checks the tools and tool_choice of a chat request and puts them into gen.
func applyTools(gen *engine.GenerateRequest, tools []*pb.Tool, choice *pb.ToolChoice) error {
	names := make(map[string]bool, len(tools))
	for i, t := range tools {
		if t.GetName() == "" {
			return request.Invalid("tools[%d].name is empty", i)
		}
		if p := t.GetParametersJson(); p != "" && !json.Valid([]byte(p)) {
			return request.Invalid("tools[%d] (%s): parameters is not valid JSON", i, t.GetName())
		}
		names[t.GetName()] = true
		gen.Tools = append(gen.Tools, engine.Tool{Name: t.GetName(), Description: t.GetDescription(), Parameters: t.GetParametersJson()})
	}
	gen.ToolChoice = engine.ToolChoice{Mode: choice.GetMode(), Function: choice.GetFunction()}
	switch gen.ToolChoice.Mode {
	case "", engine.ToolAuto, engine.ToolNone, engine.ToolRequired:
	default:
		return request.Invalid("tool_choice %q: want auto, none, required or a function", gen.ToolChoice.Mode)
	}
	if f := gen.ToolChoice.Function; f != "" && !names[f] {
		return request.Invalid("tool_choice names function %q, which is not in tools", f)
	}
	if gen.ToolChoice.Mode == engine.ToolRequired && len(tools) == 0 {
		return request.Invalid("tool_choice required needs at least one tool")
	}
	return nil
}

// MaxChoices bounds SamplingParams.n: each choice takes a slot of the model.
const MaxChoices = 8

func applySampling(gen *engine.GenerateRequest, sp *pb.SamplingParams) error {
	s := engine.DefaultSampling()
	s.Seed = math.MaxUint32 // llama.cpp: a random seed
	if sp == nil {
		gen.Sampling = s
		return nil
	}
	if sp.Temperature != nil {
		if v := sp.GetTemperature(); v < 0 || v > 100 || math.IsNaN(float64(v)) {
			return request.Invalid("sampling.temperature %v: want 0 or more (0 = always the most likely token)", v)
		}
		s.Temperature = sp.GetTemperature()
	}
	if sp.TopP != nil {
		if v := sp.GetTopP(); v < 0 || v > 1 || math.IsNaN(float64(v)) {
			return request.Invalid("sampling.top_p %v: want 0 to 1", v)
		}
		s.TopP = sp.GetTopP()
	}
	if sp.TopK != nil {
		if sp.GetTopK() < 0 {
			return request.Invalid("sampling.top_k %d: want 0 (off) or more", sp.GetTopK())
		}
		s.TopK = int(sp.GetTopK())
	}
	if sp.MinP != nil {
		if v := sp.GetMinP(); v < 0 || v > 1 || math.IsNaN(float64(v)) {
			return request.Invalid("sampling.min_p %v: want 0 to 1", v)
		}
		s.MinP = sp.GetMinP()
	}
	if sp.RepeatPenalty != nil {
		if v := sp.GetRepeatPenalty(); v < 0 || math.IsNaN(float64(v)) {
			return request.Invalid("sampling.repeat_penalty %v: want 0 or more (1 = off)", v)
		}
		s.RepeatPenalty = sp.GetRepeatPenalty()
	}
	if sp.RepeatLastN != nil {
		if sp.GetRepeatLastN() < -1 {
			return request.Invalid("sampling.repeat_last_n %d: want -1 (whole context), 0 (off) or more", sp.GetRepeatLastN())
		}
		s.RepeatLastN = int(sp.GetRepeatLastN())
	}
	if sp.PresencePenalty != nil {
		if v := sp.GetPresencePenalty(); v < -2 || v > 2 || math.IsNaN(float64(v)) {
			return request.Invalid("sampling.presence_penalty %v: want -2 to 2", v)
		}
		s.PresencePenalty = sp.GetPresencePenalty()
	}
	if sp.FrequencyPenalty != nil {
		if v := sp.GetFrequencyPenalty(); v < -2 || v > 2 || math.IsNaN(float64(v)) {
			return request.Invalid("sampling.frequency_penalty %v: want -2 to 2", v)
		}
		s.FrequencyPenalty = sp.GetFrequencyPenalty()
	}
	if sp.Seed != nil {
		s.Seed = sp.GetSeed()
	}
	if sp.GetMaxTokens() < 0 {
		return request.Invalid("sampling.max_tokens %d: want 0 (no limit) or more", sp.GetMaxTokens())
	}
	if len(sp.GetStop()) > 16 {
		return request.Invalid("sampling.stop has %d strings: at most 16", len(sp.GetStop()))
	}
	if v := sp.GetTopLogprobs(); v < 0 || v > engine.MaxTopLogprobs {
		return request.Invalid("sampling.top_logprobs %d: want 0 to %d", v, engine.MaxTopLogprobs)
	}
	if v := sp.GetN(); v < 0 || v > MaxChoices {
		return request.Invalid("sampling.n %d: want 1 to %d choices", v, MaxChoices)
	}
	gen.Logprobs = sp.GetLogprobs()
	gen.TopLogprobs = int(sp.GetTopLogprobs())
	gen.Sampling = s
	gen.MaxTokens = int(sp.GetMaxTokens())
	gen.Stop = sp.GetStop()
	gen.IgnoreEOS = sp.GetIgnoreEos()
	return nil
}

func applyFormat(gen *engine.GenerateRequest, rf *pb.ResponseFormat) error {
	switch rf.GetType() {
	case pb.ResponseFormat_TYPE_UNSPECIFIED, pb.ResponseFormat_TYPE_TEXT:
	case pb.ResponseFormat_TYPE_JSON_OBJECT:
		gen.JSONSchema = `{"type": "object"}`
	case pb.ResponseFormat_TYPE_JSON_SCHEMA:
		if !json.Valid([]byte(rf.GetJsonSchema())) {
			return request.Invalid("response_format.json_schema is not valid JSON")
		}
		gen.JSONSchema = rf.GetJsonSchema()
	case pb.ResponseFormat_TYPE_GRAMMAR:
		if rf.GetGrammar() == "" {
			return request.Invalid("response_format.grammar is empty")
		}
		gen.Grammar = rf.GetGrammar()
	default:
		return request.Invalid("response_format.type %v is unknown", rf.GetType())
	}
	return nil
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func rate(n int, d time.Duration) float64 {
	if n <= 0 || d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
