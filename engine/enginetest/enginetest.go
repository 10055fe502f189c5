// Package enginetest is a fake LLM engine for the tests of what sits above the engine interface
// (the model lifecycle, the gRPC and HTTP services), so they run in milliseconds and without cgo.
// It is a fake at a boundary, as STYLE.md allows: the llama.cpp engine itself is tested for real.
//
// A model loads from any existing file at once. A request is answered with the words of its
// prompt (or of its last message), one piece per token, as " word"; with IgnoreEOS it then
// repeats " more" until MaxTokens, or, without a limit, until its context is cancelled. Stop
// strings, MaxTokens and cancellation behave as the real engine's do.
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
}

// Name implements engine.LLMEngine.
func (*Engine) Name() string { return engine.DefaultEngine }

// LoadLLM implements engine.LLMEngine.
func (e *Engine) LoadLLM(ctx context.Context, opts engine.LoadOptions) (engine.LLM, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(opts.Path)
	if err != nil {
		return nil, err
	}
	e.Loads.Add(1)
	return &model{info: engine.ModelInfo{Architecture: "fake", SizeBytes: fi.Size(), ContextLength: max(opts.ContextLength, 256),
		TrainContextLength: 2048, Parallel: max(opts.Parallel, 1)}}, nil
}

type model struct {
	info    engine.ModelInfo
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
	m.mu.Lock()
	m.stats.Active++
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.stats.Active--
		m.mu.Unlock()
	}()
	prompt := req.Prompt
	if n := len(req.Messages); n > 0 {
		prompt = req.Messages[n-1].Content
	}
	words := strings.Fields(prompt)
	res := engine.GenerateResult{PromptTokens: len(words), FinishReason: engine.FinishStop}
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
