package api

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// The request limits (server.max_messages, server.max_prompt_bytes, server.max_tokens) are
// enforced here, where every transport arrives: gRPC on TCP, HTTP, Ollama's API, and requests
// forwarded by peers.
//
// A request over a size limit is OUT_OF_RANGE (HTTP 413), as audio over server.max_audio is.
// Not RESOURCE_EXHAUSTED: on this node that code means "busy, retry" (a full queue), which the
// router answers by trying the next node and HTTP by 503 with Retry-After; a request too large
// fails the same everywhere and must not be retried. (gRPC's own message-size check, on
// server.grpc_max_message, answers RESOURCE_EXHAUSTED before the request reaches us.)

// Caller says who sent a request, for the log line of a refused one: the transport's route and
// the client's address.
type Caller struct {
	Route string
	Addr  string
}

type callerKey struct{}

// WithCaller returns ctx carrying the caller of an HTTP request; gRPC requests need none, their
// method and peer are in the context already.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// callerOf is who sent the request of ctx, as far as is known.
func callerOf(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c
	}
	var c Caller
	c.Route, _ = grpc.Method(ctx)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.Addr = p.Addr.String()
	}
	return c
}

// limits are the service's limits, defaults filled in.
func (s *InferenceService) limits() config.Limits { return s.Limits.WithDefaults() }

// overLimit logs a request refused by the limit key and returns its error, which names the key
// to raise.
func overLimit(ctx context.Context, key string, limit any, format string, args ...any) error {
	c := callerOf(ctx)
	slog.Warn("request refused: over a limit", "route", c.Route, "limit_key", key, "limit", limit, "remote", c.Addr)
	env := "SYN4PSE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
	return status.Errorf(codes.OutOfRange, "%s, over the limit of %v: send less, or raise %s (env %s) on the node", fmt.Sprintf(format, args...), limit, key, env)
}

// checkChat refuses a chat request with more messages or message text than the limits allow.
func (s *InferenceService) checkChat(ctx context.Context, req *pb.ChatRequest) error {
	l := s.limits()
	if n := len(req.GetMessages()); n > l.MaxMessages {
		return overLimit(ctx, "server.max_messages", l.MaxMessages, "the request has %d messages", n)
	}
	var size int64
	for _, m := range req.GetMessages() {
		size += int64(len(m.GetContent()))
		for _, p := range m.GetParts() {
			size += int64(len(p.GetText()))
		}
		for _, c := range m.GetToolCalls() {
			size += int64(len(c.GetArguments()))
		}
	}
	if size > l.MaxPromptBytes {
		return overLimit(ctx, "server.max_prompt_bytes", config.FormatSize(l.MaxPromptBytes), "the messages hold %d bytes of text", size)
	}
	return nil
}

// checkComplete refuses a completion request whose prompt is larger than the limits allow.
func (s *InferenceService) checkComplete(ctx context.Context, req *pb.CompleteRequest) error {
	l := s.limits()
	if n := int64(len(req.GetPrompt())); n > l.MaxPromptBytes {
		return overLimit(ctx, "server.max_prompt_bytes", config.FormatSize(l.MaxPromptBytes), "the prompt holds %d bytes", n)
	}
	return nil
}

// checkEmbed refuses an embeddings request whose inputs hold more text than the limits allow
// (a token id counts as 4 bytes).
func (s *InferenceService) checkEmbed(ctx context.Context, req *pb.EmbedRequest) error {
	l := s.limits()
	var size int64
	for _, in := range req.GetInputs() {
		size += int64(len(in.GetText())) + 4*int64(len(in.GetTokens().GetIds()))
	}
	if size > l.MaxPromptBytes {
		return overLimit(ctx, "server.max_prompt_bytes", config.FormatSize(l.MaxPromptBytes), "the inputs hold %d bytes", size)
	}
	return nil
}

// checkRerank refuses a rerank request whose query and documents hold more text than the
// limits allow.
func (s *InferenceService) checkRerank(ctx context.Context, req *pb.RerankRequest) error {
	l := s.limits()
	size := int64(len(req.GetQuery()))
	for _, d := range req.GetDocuments() {
		size += int64(len(d))
	}
	if size > l.MaxPromptBytes {
		return overLimit(ctx, "server.max_prompt_bytes", config.FormatSize(l.MaxPromptBytes), "the query and documents hold %d bytes", size)
	}
	return nil
}

// clampTokens bounds a generation's max_tokens by server.max_tokens; a request without one
// (0, no limit) gets the limit.
func (s *InferenceService) clampTokens(ctx context.Context, gen *engine.GenerateRequest) {
	limit := s.limits().MaxTokens
	switch {
	case gen.MaxTokens == 0:
		gen.MaxTokens = limit
	case gen.MaxTokens > limit:
		c := callerOf(ctx)
		slog.Info("max_tokens clamped", "asked", gen.MaxTokens, "limit", limit, "limit_key", "server.max_tokens", "route", c.Route, "remote", c.Addr)
		gen.MaxTokens = limit
	}
}
