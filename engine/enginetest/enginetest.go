// Package enginetest is a fake LLM engine for the tests of what sits above the engine interface
// (the model lifecycle, the gRPC and HTTP services), so they run in milliseconds and without cgo.
// It is a fake at a boundary, as STYLE.md allows: the llama.cpp engine itself is tested for real.
//
// A model loads from any existing file at once. A request is answered with the words of its
// prompt (or of its last message), one piece per token, as " word"; with IgnoreEOS it then
// repeats " more" until MaxTokens, or, without a limit, until its context is cancelled. Stop
// strings, MaxTokens and cancellation behave as the real engine's do, and so do slots: a model
// runs Parallel requests at once, the others queue for a slot (Stats.Queued counts them).
// Engine.Gate holds running requests, and Engine.LoadGate loads, until a test lets them go.
package enginetest

import (
	"context"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
)

// Engine is the fake engine, registered under engine.DefaultEngine so that models declared
// without an engine use it.
type Engine struct {
	// Loads counts the models loaded so far.
	Loads atomic.Int64
	// Gate, when not nil, holds every request that has a slot before its first piece until
	// Gate is closed or the request's context ends. Set it before the first load.
	Gate chan struct{}
	// LoadGate, when not nil, holds every load until it is closed or the load's context ends.
	LoadGate chan struct{}
}

// Name implements engine.LLMEngine.
func (*Engine) Name() string { return engine.DefaultEngine }

// LoadLLM implements engine.LLMEngine.
func (e *Engine) LoadLLM(ctx context.Context, opts engine.LoadOptions) (engine.LLM, error) {
	if e.LoadGate != nil {
		select {
		case <-e.LoadGate:
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(opts.Path)
	if err != nil {
		return nil, err
	}
	e.Loads.Add(1)
	parallel := max(opts.Parallel, 1)
	return &model{info: engine.ModelInfo{Architecture: "fake", SizeBytes: fi.Size(), ContextLength: max(opts.ContextLength, 256),
		TrainContextLength: 2048, Parallel: parallel}, slots: make(chan struct{}, parallel), gate: e.Gate}, nil
}

type model struct {
	info    engine.ModelInfo
	slots   chan struct{} // one element per running request
	gate    <-chan struct{}
	mu      sync.Mutex
	stats   engine.Stats
	running sync.WaitGroup
	closed  atomic.Bool
}

func (m *model) Info() engine.ModelInfo { return m.info }

func (m *model) Stats() engine.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

func (m *model) Close() error {
	m.closed.Store(true)
	m.running.Wait()
	return nil
}

func (m *model) Generate(ctx context.Context, req engine.GenerateRequest, emit func(string) error) (engine.GenerateResult, error) {
	if m.closed.Load() {
		return engine.GenerateResult{}, engine.ErrClosed
	}
	m.running.Add(1)
	defer m.running.Done()
	queued := time.Now()
	if err := m.takeSlot(ctx); err != nil {
		return engine.GenerateResult{}, err
	}
	defer m.freeSlot()
	prompt := req.Prompt
	if n := len(req.Messages); n > 0 {
		prompt = req.Messages[n-1].Content
	}
	words := strings.Fields(prompt)
	res := engine.GenerateResult{PromptTokens: len(words), FinishReason: engine.FinishStop, QueueDuration: time.Since(queued)}
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	start := time.Now()
	var text strings.Builder
	for i := 0; ; i++ {
		if req.MaxTokens > 0 && res.CompletionTokens == req.MaxTokens {
			res.FinishReason = engine.FinishLength
			break
		}
		var piece string
		switch {
		case i < len(words):
			piece = " " + words[i]
		case req.IgnoreEOS:
			piece = " more"
		}
		if piece == "" {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		text.WriteString(piece)
		if stop := firstStop(text.String(), req.Stop); stop >= 0 {
			if cut := stop - (text.Len() - len(piece)); cut > 0 {
				if err := emit(piece[:cut]); err != nil {
					return res, err
				}
			}
			res.CompletionTokens++
			break
		}
		if err := emit(piece); err != nil {
			return res, err
		}
		res.CompletionTokens++
		if req.IgnoreEOS && req.MaxTokens == 0 {
			// Until cancelled: yield so a test's other goroutines run.
			time.Sleep(time.Millisecond)
		}
	}
	res.GenerateDuration = time.Since(start)
	m.mu.Lock()
	m.stats.Requests++
	m.stats.PromptTokens += int64(res.PromptTokens)
	m.stats.GeneratedTokens += int64(res.CompletionTokens)
	m.stats.GenerateTime += res.GenerateDuration
	m.mu.Unlock()
	return res, nil
}

// takeSlot waits, counted in Stats.Queued, until the model has a free slot for a request.
func (m *model) takeSlot(ctx context.Context) error {
	m.mu.Lock()
	m.stats.Queued++
	m.mu.Unlock()
	var err error
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		err = ctx.Err()
	}
	m.mu.Lock()
	m.stats.Queued--
	if err == nil {
		m.stats.Active++
	}
	m.mu.Unlock()
	return err
}

func (m *model) freeSlot() {
	m.mu.Lock()
	m.stats.Active--
	m.mu.Unlock()
	<-m.slots
}

// firstStop is where the earliest stop string starts in text, or -1.
func firstStop(text string, stops []string) int {
	first := -1
	for _, s := range stops {
		if i := strings.Index(text, s); s != "" && i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

var _ engine.LLMEngine = (*Engine)(nil)
