package llamacpp_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
)

// batchPrompts are prompts of different lengths, so that the sequences of one batch sit at
// different positions and some finish reading their prompt while others generate.
func batchPrompts(n int) []string {
	prompts := make([]string, n)
	for i := range prompts {
		prompts[i] = fmt.Sprintf("Request %d: %s", i, strings.Repeat("the quick brown fox ", 1+i*3))
	}
	return prompts
}

// TestConcurrentGreedyMatchesAlone checks that batching sequences together changes nothing:
// eight greedy requests at once produce what each produces alone.
func TestConcurrentGreedyMatchesAlone(t *testing.T) {
	llm := load(t, engine.LoadOptions{Parallel: 8, ContextLength: 512})
	prompts := batchPrompts(8)
	req := func(p string) engine.GenerateRequest {
		return engine.GenerateRequest{Prompt: p, Sampling: greedy(), MaxTokens: 24, IgnoreEOS: true}
	}
	alone := make([]string, len(prompts))
	for i, p := range prompts {
		alone[i], _, _ = generate(t, llm, req(p))
	}
	// Other prompts first, so that no slot's cache holds the prompt it will get.
	generate(t, llm, req("something else entirely"))

	together := make([]string, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() {
			var b strings.Builder
			_, errs[i] = llm.Generate(t.Context(), req(p), func(s string) error {
				b.WriteString(s)
				return nil
			})
			together[i] = b.String()
		})
	}
	wg.Wait()
	for i := range prompts {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if together[i] != alone[i] {
			t.Errorf("request %d:\nalone    %q\ntogether %q", i, alone[i], together[i])
		}
	}
	if st := llm.Stats(); st.Active != 0 || st.Queued != 0 || st.Requests != 2*int64(len(prompts))+1 {
		t.Errorf("stats after the requests: %+v", st)
	}
}

// TestCancelledRequestFreesItsSlotWhileOthersGoOn cancels one of three running requests: its
// Generate returns context.Canceled, the other two produce all their tokens, and a queued
// request takes the freed slot.
func TestCancelledRequestFreesItsSlotWhileOthersGoOn(t *testing.T) {
	llm := load(t, engine.LoadOptions{Parallel: 3, ContextLength: 2048})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const maxTokens = 40
	type outcome struct {
		res engine.GenerateResult
		err error
	}
	var started sync.WaitGroup
	started.Add(3)
	results := make([]chan outcome, 3)
	for i := range results {
		results[i] = make(chan outcome, 1)
		reqCtx := t.Context()
		if i == 0 {
			reqCtx = ctx
		}
		go func() {
			var once sync.Once
			req := engine.GenerateRequest{Prompt: fmt.Sprintf("story %d", i), Sampling: greedy(), MaxTokens: maxTokens, IgnoreEOS: true}
			if i == 0 {
				req.MaxTokens = 0 // until cancelled (or the context is full)
			}
			res, err := llm.Generate(reqCtx, req, func(string) error {
				once.Do(started.Done)
				return nil
			})
			results[i] <- outcome{res, err}
		}()
	}
	started.Wait()
	cancel()
	if o := <-results[0]; !errors.Is(o.err, context.Canceled) {
		t.Fatalf("cancelled request: err = %v, want context.Canceled", o.err)
	}
	// A fourth request gets the cancelled one's slot while the others still run.
	res, err := llm.Generate(t.Context(), engine.GenerateRequest{Prompt: "after", Sampling: greedy(), MaxTokens: 4, IgnoreEOS: true}, func(string) error { return nil })
	if err != nil || res.CompletionTokens != 4 {
		t.Fatalf("request after the cancel: %v %+v", err, res)
	}
	for i := 1; i < 3; i++ {
		o := <-results[i]
		if o.err != nil || o.res.CompletionTokens != maxTokens || o.res.FinishReason != engine.FinishLength {
			t.Errorf("request %d: err %v, %+v; want all %d tokens", i, o.err, o.res, maxTokens)
		}
	}
}

// TestLongPromptInterleavesWithStreams sends a long prompt while two streams generate: they
// keep receiving tokens while it is read, many more than one per prompt batch.
func TestLongPromptInterleavesWithStreams(t *testing.T) {
	const batch = 256
	llm := load(t, engine.LoadOptions{Parallel: 3, ContextLength: 2048, BatchSize: batch})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	var reading atomic.Bool // the long prompt was sent and its first token has not come
	var during [2]atomic.Int32
	var first sync.WaitGroup
	first.Add(2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			var once sync.Once
			_, err := llm.Generate(ctx, engine.GenerateRequest{
				Prompt: fmt.Sprintf("stream %d", i), Sampling: greedy(), MaxTokens: 1500, IgnoreEOS: true,
			}, func(string) error {
				once.Do(first.Done)
				if reading.Load() {
					during[i].Add(1)
				}
				return nil
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("stream %d: %v", i, err)
			}
		})
	}
	first.Wait()

	long := strings.Repeat("a long prompt keeps the model busy ", 60)
	reading.Store(true)
	res, err := llm.Generate(t.Context(), engine.GenerateRequest{Prompt: long, Sampling: greedy(), MaxTokens: 1}, func(string) error {
		reading.Store(false)
		return nil
	})
	reading.Store(false)
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("long prompt: %v", err)
	}
	chunks := (res.PromptTokens + batch - 1) / batch
	t.Logf("long prompt of %d tokens (%d batches of %d); tokens the streams got meanwhile: %d, %d",
		res.PromptTokens, chunks, batch, during[0].Load(), during[1].Load())
	for i := range during {
		if n := int(during[i].Load()); n < 4*chunks {
			t.Errorf("stream %d got %d tokens while a %d-token prompt was read; want at least %d (four per prompt batch)", i, n, res.PromptTokens, 4*chunks)
		}
	}
}

// TestCloseEndsQueuedAndWaitsForRunning closes a model with one request running and one
// queued: the queued one fails with ErrClosed, the running one finishes.
func TestCloseEndsQueuedAndWaitsForRunning(t *testing.T) {
	llm := load(t, engine.LoadOptions{Parallel: 1, ContextLength: 2048})
	running := make(chan struct{})
	var once sync.Once
	done := make(chan error, 2)
	go func() {
		_, err := llm.Generate(t.Context(), engine.GenerateRequest{Prompt: "first", Sampling: greedy(), MaxTokens: 1500, IgnoreEOS: true}, func(string) error {
			once.Do(func() { close(running) })
			return nil
		})
		done <- err
	}()
	<-running
	go func() {
		_, err := llm.Generate(t.Context(), engine.GenerateRequest{Prompt: "second", Sampling: greedy(), MaxTokens: 4}, func(string) error { return nil })
		done <- err
	}()
	for llm.Stats().Queued == 0 {
		time.Sleep(time.Millisecond)
	}
	llm.Close()
	var errs []error
	for range 2 {
		errs = append(errs, <-done)
	}
	if !(errs[0] == nil && errors.Is(errs[1], engine.ErrClosed) || errs[1] == nil && errors.Is(errs[0], engine.ErrClosed)) {
		t.Fatalf("errors = %v; want the running request to finish and the queued one to get ErrClosed", errs)
	}
	if _, err := llm.Generate(t.Context(), engine.GenerateRequest{Prompt: "late"}, func(string) error { return nil }); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}
