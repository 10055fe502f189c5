package llamacpp

import (
	"context"
	"errors"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// generation is one request running in a slot.
type generation struct {
	m         *model
	slot      *slot
	sampler   *native.Sampler
	ctx       context.Context
	emit      func(string) error
	filter    outputFilter
	maxTokens int
}

// run evaluates the prompt (reusing the slot's cached prefix), then samples until a stop.
func (g *generation) run(tokens []int32, res *engine.GenerateResult) error {
	m, s := g.m, g.slot
	res.PromptTokens = len(tokens)

	start := time.Now()
	cached := commonPrefix(s.tokens, tokens)
	if cached == len(tokens) {
		cached-- // the last prompt token must be decoded again to get its logits
	}
	if !m.lctx.RemoveTokens(s.seq, cached, -1) {
		m.lctx.RemoveTokens(s.seq, 0, -1)
		cached = 0
	}
	s.tokens = s.tokens[:cached]
	res.CachedPromptTokens = cached

	next, err := g.evalPrompt(tokens[cached:])
	if err != nil {
		return err
	}
	res.PromptDuration = time.Since(start)

	start = time.Now()
	defer func() { res.GenerateDuration = time.Since(start) }()
	for {
		if m.native.IsEOG(next) {
			res.FinishReason = engine.FinishStop
			return g.emitText(g.filter.flush())
		}
		res.CompletionTokens++
		text, stopped := g.filter.push(m.native.AppendPiece(nil, next, false))
		if err := g.emitText(text); err != nil {
			return err
		}
		if stopped {
			res.FinishReason = engine.FinishStop
			return nil
		}
		if g.maxTokens > 0 && res.CompletionTokens >= g.maxTokens || len(s.tokens)+1 >= m.seqLen {
			res.FinishReason = engine.FinishLength
			return g.emitText(g.filter.flush())
		}
		if next, err = g.decode([]int32{next}); err != nil {
			return err
		}
	}
}

func (g *generation) emitText(text string) error {
	if text == "" {
		return nil
	}
	return g.emit(text)
}

// evalPrompt decodes the prompt in batches and samples the first generated token.
func (g *generation) evalPrompt(tokens []int32) (int32, error) {
	for len(tokens) > g.m.batchSize {
		if _, err := g.decodeOnly(tokens[:g.m.batchSize], false); err != nil {
			return 0, err
		}
		tokens = tokens[g.m.batchSize:]
	}
	return g.decode(tokens)
}

// decode appends tokens to the slot's sequence and samples the next token from the last one.
func (g *generation) decode(tokens []int32) (int32, error) {
	return g.decodeOnly(tokens, true)
}

func (g *generation) decodeOnly(tokens []int32, sample bool) (int32, error) {
	m, s := g.m, g.slot
	m.decodeMu.Lock()
	defer m.decodeMu.Unlock()
	for {
		if err := g.ctx.Err(); err != nil {
			return 0, err
		}
		pos := len(s.tokens)
		m.batch.Clear()
		for i, t := range tokens {
			m.batch.Add(t, pos+i, s.seq, sample && i == len(tokens)-1)
		}
		m.lctx.SetAbort(false)
		err := m.lctx.Decode(m.batch)
		if errors.Is(err, native.ErrAborted) {
			// Aborted for this request's cancellation, or another slot's: drop what the
			// partial decode left and retry unless this request is the one cancelled.
			m.lctx.RemoveTokens(s.seq, pos, -1)
			continue
		}
		if errors.Is(err, native.ErrNoKVSlot) {
			m.lctx.RemoveTokens(s.seq, pos, -1)
			return 0, &engine.ContextExceededError{PromptTokens: pos + len(tokens), Limit: m.seqLen}
		}
		if err != nil {
			m.lctx.RemoveTokens(s.seq, pos, -1)
			return 0, err
		}
		s.tokens = append(s.tokens, tokens...)
		if !sample {
			return 0, nil
		}
		return g.sampler.Sample(m.lctx, -1), nil
	}
}

func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
