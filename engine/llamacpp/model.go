package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/chattemplate"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// model is one loaded GGUF model with its context. Requests take a slot (a KV-cache sequence);
// when all are busy they queue on the slots channel. One llama_decode runs at a time on the
// context: decodeMu guards the context, the batch and the logits until they are sampled.
type model struct {
	native    *native.Model
	lctx      *native.Context
	batch     *native.Batch
	slots     chan *slot
	decodeMu  sync.Mutex
	closed    atomic.Bool
	closeOnce sync.Once
	seqLen    int
	batchSize int
	info      engine.ModelInfo

	queued, active                              atomic.Int32
	requests, promptTokens, genTokens, genNanos atomic.Int64

	template       *chattemplate.Template // nil when the GGUF has none or gonja cannot parse it
	templateSource string
	bos, eos       string
}

// slot is one KV-cache sequence and the tokens it holds, for prefix reuse.
type slot struct {
	seq    int
	tokens []int32
}

// Info implements engine.LLM.
func (m *model) Info() engine.ModelInfo { return m.info }

// Stats implements engine.LLM.
func (m *model) Stats() engine.Stats {
	return engine.Stats{
		Active: int(m.active.Load()), Queued: int(m.queued.Load()), Requests: m.requests.Load(),
		PromptTokens: m.promptTokens.Load(), GeneratedTokens: m.genTokens.Load(),
		GenerateTime: time.Duration(m.genNanos.Load()),
	}
}

// Close waits for running generations, then frees the context and the model.
func (m *model) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		for range cap(m.slots) {
			<-m.slots
		}
		m.batch.Free()
		m.lctx.Close()
		m.native.Close()
	})
	return nil
}

// Generate implements engine.LLM.
func (m *model) Generate(ctx context.Context, req engine.GenerateRequest, emit func(string) error) (engine.GenerateResult, error) {
	var res engine.GenerateResult
	if m.closed.Load() {
		return res, engine.ErrClosed
	}
	prompt, err := m.renderPrompt(req)
	if err != nil {
		return res, err
	}
	tokens, err := m.tokenize(prompt)
	if err != nil {
		return res, err
	}
	if len(tokens) >= m.seqLen {
		return res, &engine.ContextExceededError{PromptTokens: len(tokens), Limit: m.seqLen}
	}
	if req.Grammar == "" && req.JSONSchema != "" {
		if req.Grammar, err = native.SchemaToGrammar([]byte(req.JSONSchema)); err != nil {
			return res, fmt.Errorf("%w: %v", engine.ErrInvalidRequest, err)
		}
	}
	sampler, err := native.NewSampler(m.native, samplerParams(req))
	if err != nil {
		return res, fmt.Errorf("%w: grammar: %v", engine.ErrInvalidRequest, err)
	}
	defer sampler.Close()

	queued := time.Now()
	m.queued.Add(1)
	var s *slot
	select {
	case s = <-m.slots:
		m.queued.Add(-1)
	case <-ctx.Done():
		m.queued.Add(-1)
		return res, ctx.Err()
	}
	m.active.Add(1)
	m.requests.Add(1)
	defer func() {
		m.promptTokens.Add(int64(res.PromptTokens - res.CachedPromptTokens))
		m.genTokens.Add(int64(res.CompletionTokens))
		m.genNanos.Add(int64(res.GenerateDuration))
		m.active.Add(-1)
		m.slots <- s
	}()
	if m.closed.Load() {
		return res, engine.ErrClosed
	}
	res.QueueDuration = time.Since(queued)

	stopAbort := context.AfterFunc(ctx, func() { m.lctx.SetAbort(true) })
	defer stopAbort()

	g := generation{m: m, slot: s, sampler: sampler, ctx: ctx, emit: emit,
		filter: outputFilter{stops: nonEmpty(req.Stop)}, maxTokens: req.MaxTokens}
	err = g.run(tokens, &res)
	return res, err
}

// renderPrompt applies the chat template to messages, or returns the raw prompt.
func (m *model) renderPrompt(req engine.GenerateRequest) (string, error) {
	if req.Messages == nil {
		if req.Prompt == "" {
			return "", fmt.Errorf("%w: the prompt is empty", engine.ErrInvalidRequest)
		}
		return req.Prompt, nil
	}
	if len(req.Messages) == 0 {
		return "", fmt.Errorf("%w: messages is empty; send at least one message", engine.ErrInvalidRequest)
	}
	msgs := make([]chattemplate.Message, len(req.Messages))
	for i, msg := range req.Messages {
		switch msg.Role {
		case "system", "user", "assistant", "tool", "developer":
		default:
			return "", fmt.Errorf("%w: messages[%d].role %q: want system, user, assistant or tool", engine.ErrInvalidRequest, i, msg.Role)
		}
		msgs[i] = chattemplate.Message{Role: msg.Role, Content: msg.Content}
	}
	if m.template != nil {
		prompt, err := m.template.Render(msgs, chattemplate.Options{AddGenerationPrompt: true, BOSToken: m.bos, EOSToken: m.eos})
		if err == nil {
			return prompt, nil
		}
		if errors.Is(err, chattemplate.ErrRejected) {
			// The template itself rejected the conversation (e.g. roles that do not alternate).
			return "", fmt.Errorf("%w: the model's chat template rejected the messages: %v", engine.ErrInvalidRequest, err)
		}
	}
	return m.renderBuiltin(msgs)
}

// renderBuiltin formats with llama.cpp's built-in formats, recognised from the template text;
// a model without a template gets ChatML.
func (m *model) renderBuiltin(msgs []chattemplate.Message) (string, error) {
	src := m.templateSource
	if src == "" {
		src = "chatml"
	}
	cmsgs := make([]native.ChatMessage, len(msgs))
	for i, msg := range msgs {
		cmsgs[i] = native.ChatMessage{Role: msg.Role, Content: msg.Content}
	}
	prompt, err := native.ApplyBuiltinTemplate(src, cmsgs, true)
	if errors.Is(err, native.ErrUnknownTemplate) {
		prompt, err = native.ApplyBuiltinTemplate("chatml", cmsgs, true)
	}
	return prompt, err
}

// tokenize adds BOS unless the rendered template already starts with it.
func (m *model) tokenize(prompt string) ([]int32, error) {
	addSpecial := !(m.bos != "" && strings.HasPrefix(prompt, m.bos))
	return m.native.Tokenize(prompt, addSpecial, true)
}

func samplerParams(req engine.GenerateRequest) native.SamplerParams {
	s := req.Sampling
	return native.SamplerParams{
		Temperature: s.Temperature, TopK: s.TopK, TopP: s.TopP, MinP: s.MinP,
		RepeatPenalty: s.RepeatPenalty, RepeatLastN: s.RepeatLastN,
		PresencePenalty: s.PresencePenalty, FrequencyPenalty: s.FrequencyPenalty,
		Seed: s.Seed, Grammar: req.Grammar, IgnoreEOG: req.IgnoreEOS,
	}
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
