package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// choice is one entry of "choices" in both chat and completion responses and chunks.
type choice struct {
	Index        int             `json:"index"`
	Message      *chatMessageOut `json:"message,omitempty"`
	Delta        *chatContent    `json:"delta,omitempty"`
	Text         *string         `json:"text,omitempty"`
	Logprobs     any             `json:"logprobs"` // chatLogprobs, completionLogprobs or null
	FinishReason *string         `json:"finish_reason"`
}

type chatContent struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

// chatMessageOut is a chat response's message: content is null when the model only called tools.
type chatMessageOut struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

// completionObject is a chat.completion, chat.completion.chunk, text_completion (also its chunks).
type completionObject struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	SystemFingerprint string   `json:"system_fingerprint"`
	Choices           []choice `json:"choices"`
	Usage             *usage   `json:"usage,omitempty"`
}

// flavor says how one API (chat or legacy completions) names and shapes its objects.
type flavor struct {
	idPrefix, object, chunkObject string
	chat                          bool
}

var (
	chatFlavor       = flavor{idPrefix: "chatcmpl-", object: "chat.completion", chunkObject: "chat.completion.chunk", chat: true}
	completionFlavor = flavor{idPrefix: "cmpl-", object: "text_completion", chunkObject: "text_completion"}
)

// deltaChoice is the choice of a streamed chunk carrying text (or, first for chat, the role).
func (f flavor) deltaChoice(role, text string) choice {
	if f.chat {
		c := &chatContent{Role: role, Content: &text}
		return choice{Delta: c}
	}
	return choice{Text: &text}
}

func (f flavor) finalChoice(text string, final *pb.Final, stream bool) choice {
	reason := finishReason(final)
	switch {
	case !f.chat:
		return choice{Text: &text, FinishReason: &reason}
	case stream:
		return choice{Delta: &chatContent{}, FinishReason: &reason}
	}
	msg := &chatMessageOut{Role: "assistant", Content: &text, ToolCalls: toolCallsOf(final)}
	if text == "" && len(msg.ToolCalls) > 0 {
		msg.Content = nil
	}
	return choice{Message: msg, FinishReason: &reason}
}

// chatLogprobs is a chat choice's logprobs.
type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
}

type chatTokenLogprob struct {
	chatTopLogprob
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// completionLogprobs is a legacy completion choice's logprobs; TextOffset counts bytes from the
// start of the completion.
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float32            `json:"token_logprobs"`
	TopLogprobs   []map[string]float32 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// logprobs shapes the log-probabilities of tokens that follow offset bytes of the choice's text;
// nil (null) when there are none.
func (f flavor) logprobs(lps []*pb.TokenLogprob, offset int) any {
	if len(lps) == 0 {
		return nil
	}
	if f.chat {
		out := chatLogprobs{Content: make([]chatTokenLogprob, len(lps))}
		for i, lp := range lps {
			out.Content[i].chatTopLogprob = chatTopLogprob{lp.GetToken(), lp.GetLogprob(), byteList(lp.GetBytes())}
			out.Content[i].TopLogprobs = []chatTopLogprob{}
			for _, t := range lp.GetTopLogprobs() {
				out.Content[i].TopLogprobs = append(out.Content[i].TopLogprobs, chatTopLogprob{t.GetToken(), t.GetLogprob(), byteList(t.GetBytes())})
			}
		}
		return out
	}
	var out completionLogprobs
	for _, lp := range lps {
		out.Tokens = append(out.Tokens, lp.GetToken())
		out.TokenLogprobs = append(out.TokenLogprobs, lp.GetLogprob())
		top := make(map[string]float32, len(lp.GetTopLogprobs()))
		for _, t := range lp.GetTopLogprobs() {
			top[t.GetToken()] = t.GetLogprob()
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
		out.TextOffset = append(out.TextOffset, offset)
		offset += len(lp.GetBytes())
	}
	return out
}

// byteList is b as JSON numbers, as OpenAI sends a token's bytes.
func byteList(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// generated is what a non-streamed response collects of one choice.
type generated struct {
	text  strings.Builder
	lps   []*pb.TokenLogprob
	final *pb.Final
}

const fingerprint = "syn4pse"

// generationRequest is an OpenAI request body that converts to one of our requests.
type generationRequest[P any] interface {
	toProto(*pb.Routing) (P, error)
	options() *samplingFields
}

func (r *chatRequest) options() *samplingFields       { return &r.samplingFields }
func (r *completionRequest) options() *samplingFields { return &r.samplingFields }

// handleGeneration decodes an OpenAI request body into req and serves it with stream.
func handleGeneration[P any](h *Handler, w http.ResponseWriter, r *http.Request, f flavor, req generationRequest[P], stream func(context.Context, P, api.Sender) error) {
	if !h.decodeJSON(w, r, req) {
		return
	}
	serveDecoded(h, w, r, f, req, stream)
}

// serveDecoded serves a request body already decoded into req.
func serveDecoded[P any](h *Handler, w http.ResponseWriter, r *http.Request, f flavor, req generationRequest[P], stream func(context.Context, P, api.Sender) error) {
	preq, err := req.toProto(wire.Routing(r))
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	opts := req.options()
	run := func(ctx context.Context, send api.Sender) error { return stream(ctx, preq, send) }
	h.serveGeneration(w, r, f, opts.Stream, opts.includeUsage(), opts.choices(), run)
}

func (h *Handler) chatCompletions(w http.ResponseWriter, r *http.Request) {
	req := &chatRequest{}
	if !h.decodeJSON(w, r, req) {
		return
	}
	if err := h.inlineImageURLs(r.Context(), req); err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	if slices.Contains(req.Modalities, "audio") {
		if req.choices() > 1 {
			wire.WriteStatusError(w, status.Error(codes.InvalidArgument, "n > 1 is not supported with audio output"))
			return
		}
		h.chatWithAudio(w, r, req)
		return
	}
	serveDecoded(h, w, r, chatFlavor, req, h.inference.StreamChat)
}

func (h *Handler) completions(w http.ResponseWriter, r *http.Request) {
	handleGeneration(h, w, r, completionFlavor, &completionRequest{}, h.inference.StreamComplete)
}

func (h *Handler) serveGeneration(w http.ResponseWriter, r *http.Request, f flavor, stream, includeUsage bool, n int, run func(context.Context, api.Sender) error) {
	if stream {
		s := &sseStream{Events: wire.Events{W: w}, flavor: f, includeUsage: includeUsage, created: time.Now().Unix(), choices: n}
		err := run(r.Context(), s.send)
		s.finish(err)
		return
	}
	var id, model string
	gens := make([]generated, n)
	err := run(r.Context(), func(ev *pb.GenerateResponse) error {
		id, model = ev.GetId(), ev.GetModel()
		if d := ev.GetDelta(); d != nil && int(d.GetIndex()) < n {
			g := &gens[d.GetIndex()]
			g.text.WriteString(d.GetText())
			g.lps = append(g.lps, d.GetLogprobs()...)
		}
		if fin := ev.GetFinal(); fin != nil && int(fin.GetIndex()) < n {
			gens[fin.GetIndex()].final = fin
		}
		return nil
	})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	obj := completionObject{
		ID: f.idPrefix + id, Object: f.object, Created: time.Now().Unix(), Model: model,
		SystemFingerprint: fingerprint, Usage: &usage{},
	}
	for i := range gens {
		g := &gens[i]
		c := f.finalChoice(g.text.String(), g.final, false)
		c.Index, c.Logprobs = i, f.logprobs(g.lps, 0)
		obj.Choices = append(obj.Choices, c)
		obj.Usage.add(g.final)
	}
	setServedBy(w, gens[0].final)
	wire.WriteJSON(w, http.StatusOK, obj)
}

func setServedBy(w http.ResponseWriter, final *pb.Final) {
	if id := final.GetServedBy(); id != "" {
		w.Header().Set("Syn4pse-Served-By", id)
	}
}

// sseStream writes a generation as OpenAI's server-sent events.
type sseStream struct {
	wire.Events
	flavor       flavor
	includeUsage bool
	created      int64
	// choices is n; announced and offset are by choice: whether its role went out (chat), the
	// bytes of text its logprobs covered (legacy completions); finals counts the ended ones,
	// whose usage adds up in usage.
	choices   int
	announced map[int32]bool
	offset    map[int32]int
	finals    int
	usage     usage
}

func (s *sseStream) send(ev *pb.GenerateResponse) error {
	obj := completionObject{
		ID: s.flavor.idPrefix + ev.GetId(), Object: s.flavor.chunkObject, Created: s.created,
		Model: ev.GetModel(), SystemFingerprint: fingerprint,
	}
	if !s.Started {
		s.Start(ev.GetServedBy())
		s.announced, s.offset = map[int32]bool{}, map[int32]int{}
	}
	index := ev.GetDelta().GetIndex()
	if ev.GetFinal() != nil {
		index = ev.GetFinal().GetIndex()
	}
	if s.flavor.chat && !s.announced[index] {
		// OpenAI's first chunk of a choice announces the role with empty content.
		s.announced[index] = true
		obj.Choices = []choice{s.flavor.deltaChoice("assistant", "")}
		obj.Choices[0].Index = int(index)
		if err := s.Write(obj); err != nil {
			return err
		}
	}
	if d := ev.GetDelta(); d != nil {
		var c choice
		if len(d.GetToolCalls()) > 0 {
			c = choice{Delta: &chatContent{ToolCalls: toolCallDeltas(d.GetToolCalls())}}
		} else {
			c = s.flavor.deltaChoice("", d.GetText())
		}
		c.Index, c.Logprobs = int(index), s.flavor.logprobs(d.GetLogprobs(), s.offset[index])
		for _, lp := range d.GetLogprobs() {
			s.offset[index] += len(lp.GetBytes())
		}
		obj.Choices = []choice{c}
		return s.Write(obj)
	}
	final := ev.GetFinal()
	s.usage.add(final)
	s.finals++
	last := s.finals >= s.choices
	// Usage comes once, summed over the choices: in OpenAI's separate chunk with empty choices
	// when the client asked for it (stream_options.include_usage), else in the last finishing
	// chunk, as llama.cpp's server does. Twice would make clients that add up usage across
	// chunks count it twice.
	obj.Choices = []choice{s.flavor.finalChoice("", final, true)}
	obj.Choices[0].Index = int(index)
	if !s.includeUsage && last {
		obj.Usage = &s.usage
	}
	if err := s.Write(obj); err != nil || !s.includeUsage || !last {
		return err
	}
	obj.Choices = []choice{}
	obj.Usage = &s.usage
	return s.Write(obj)
}

// finish ends the stream: an error before any event becomes an HTTP error response; after it,
// an error event in OpenAI's shape; success ends with "data: [DONE]".
func (s *sseStream) finish(err error) {
	if err != nil {
		slog.Debug("stream ended with an error", "err", err)
	}
	started := s.Started
	s.Fail(err)
	if !s.Failed && (started || err == nil) {
		s.WriteRaw([]byte("data: [DONE]\n\n"))
	}
}
