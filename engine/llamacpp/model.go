package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/chattemplate"
	"github.com/ekisa-team/syn4pse/engine/toolcall"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// model is one loaded GGUF model with its context, run by its decode loop.
type model struct {
	native    *native.Model
	lctx      *native.Context
	loop      *loop
	proj      *native.Projector // nil for a text-only model
	closeOnce sync.Once
	// life is held (read) by each Generate and taken by Close, after the loop has ended every
	// request, to free the model only when no Generate uses it.
	life   sync.RWMutex
	closed bool
	info   engine.ModelInfo

	template       *chattemplate.Template // nil when the GGUF has none or gonja cannot parse it
	templateSource string
	bos, eos       string
	toolFormat     toolcall.Format // how the template teaches the model to write tool calls
}

// Info implements engine.LLM.
func (m *model) Info() engine.ModelInfo { return m.info }

// Stats implements engine.LLM.
func (m *model) Stats() engine.Stats {
	l := m.loop
	return engine.Stats{
		Active: int(l.active.Load()), Queued: int(l.queued.Load()), Requests: l.requests.Load(),
		PromptTokens: l.promptTokens.Load(), GeneratedTokens: l.genTokens.Load(),
		GenerateTime: time.Duration(l.genNanos.Load()),
	}
}

// Close fails the queued requests, waits for the running ones, then frees the context and the
// model.
func (m *model) Close() error {
	m.closeOnce.Do(func() {
		m.loop.close()
		m.life.Lock()
		defer m.life.Unlock()
		m.closed = true
		m.lctx.Close()
		if m.proj != nil {
			m.proj.Close()
		}
		m.native.Close()
	})
	return nil
}

// Generate implements engine.LLM.
func (m *model) Generate(ctx context.Context, req engine.GenerateRequest, emit func(string) error) (engine.GenerateResult, error) {
	var res engine.GenerateResult
	if err := ctx.Err(); err != nil {
		return res, err
	}
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return res, engine.ErrClosed
	}
	media, err := m.checkMedia(req)
	if err != nil {
		return res, err
	}
	prompt, err := m.renderPrompt(req)
	if err != nil {
		return res, err
	}
	var tokens []int32
	var mp *native.MediaPrompt
	size := 0
	if media == nil {
		if tokens, err = m.tokenize(prompt); err != nil {
			return res, err
		}
		size = len(tokens)
	} else {
		if mp, err = m.tokenizeMedia(prompt, media); err != nil {
			return res, err
		}
		// The loop evaluates the chunks until it ends the request, and Generate returns only then.
		defer mp.Free()
		size = max(mp.Tokens, mp.Positions)
	}
	if limit := m.info.ContextLength; size >= limit {
		return res, &engine.ContextExceededError{PromptTokens: size, Limit: limit}
	}
	if req.ToolsActive() && (req.ToolChoice.Mode == engine.ToolRequired || req.ToolChoice.Function != "") {
		if req.Grammar, err = toolGrammar(req, m.toolFormat); err != nil {
			return res, err
		}
	}
	if req.TopLogprobs < 0 || req.TopLogprobs > engine.MaxTopLogprobs {
		return res, fmt.Errorf("%w: top_logprobs is %d; want 0 to %d", engine.ErrInvalidRequest, req.TopLogprobs, engine.MaxTopLogprobs)
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
	// The loop uses the sampler until it ends the request, and Generate returns only then.
	defer sampler.Close()

	r := &request{
		ctx: ctx, prompt: tokens, media: mp, sampler: sampler, maxTokens: req.MaxTokens,
		filter: outputFilter{stops: nonEmpty(req.Stop)}, queuedAt: time.Now(), ready: make(chan struct{}, 1),
		logprobs: req.Logprobs && req.OnToken != nil, topLogprobs: req.TopLogprobs,
	}
	if err := m.loop.submit(r); err != nil {
		return res, err
	}
	defer context.AfterFunc(ctx, func() { m.loop.stop(r) })()
	var calls *callReader
	if req.ToolsActive() {
		calls = &callReader{stream: toolcall.NewStream(m.toolFormat), emit: emit, onCall: req.OnToolCall}
		emit = calls.write
	}
	var emitErr error
	for {
		<-r.ready
		text, lps, generated, done := r.take()
		for _, lp := range lps {
			if emitErr == nil {
				if emitErr = req.OnToken(lp); emitErr != nil {
					m.loop.stop(r)
				}
			}
		}
		if text != "" && emitErr == nil {
			if req.OnCount != nil {
				req.OnCount(generated)
			}
			if emitErr = emit(text); emitErr != nil {
				m.loop.stop(r)
			}
		}
		if r.unread.CompareAndSwap(true, false) {
			select {
			case m.loop.read <- struct{}{}:
			default:
			}
		}
		if done {
			break
		}
	}
	r.mu.Lock()
	res, err = r.res, r.err
	r.mu.Unlock()
	if emitErr == nil && err == nil && calls != nil {
		emitErr = calls.close(&res)
	}
	if emitErr != nil {
		return res, emitErr
	}
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
		msgs[i] = templateMessage(msg)
	}
	if m.template != nil {
		opts := chattemplate.Options{AddGenerationPrompt: !req.ContinueFinal, ContinueFinalMessage: req.ContinueFinal, BOSToken: m.bos, EOSToken: m.eos}
		if req.ToolsActive() {
			tools, err := templateTools(req.Tools)
			if err != nil {
				return "", err
			}
			opts.Vars = map[string]any{"tools": tools}
		}
		prompt, err := m.template.Render(msgs, opts)
		if err == nil {
			return prompt, nil
		}
		if errors.Is(err, chattemplate.ErrRejected) || errors.Is(err, chattemplate.ErrNotContinuable) {
			// The template itself rejected the conversation (e.g. roles that do not alternate).
			return "", fmt.Errorf("%w: the model's chat template rejected the messages: %v", engine.ErrInvalidRequest, err)
		}
	}
	if req.ContinueFinal {
		prompt, err := chattemplate.OpenFinal(msgs, m.renderBuiltin)
		if errors.Is(err, chattemplate.ErrNotContinuable) {
			return "", fmt.Errorf("%w: %v", engine.ErrInvalidRequest, err)
		}
		return prompt, err
	}
	return m.renderBuiltin(msgs, true)
}

// renderBuiltin formats with llama.cpp's built-in formats, recognised from the template text;
// a model without a template gets ChatML. addAssistant ends the prompt with the generation
// prompt.
func (m *model) renderBuiltin(msgs []chattemplate.Message, addAssistant bool) (string, error) {
	src := m.templateSource
	if src == "" {
		src = "chatml"
	}
	cmsgs := make([]native.ChatMessage, len(msgs))
	for i, msg := range msgs {
		cmsgs[i] = native.ChatMessage{Role: msg.Role, Content: msg.Content}
	}
	prompt, err := native.ApplyBuiltinTemplate(src, cmsgs, addAssistant)
	if errors.Is(err, native.ErrUnknownTemplate) {
		prompt, err = native.ApplyBuiltinTemplate("chatml", cmsgs, addAssistant)
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
