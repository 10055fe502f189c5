package enginetest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/enginetest"
)

func TestFakeEngineBehavesAsTheInterfaceSays(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	var e enginetest.Engine
	if _, err := e.LoadLLM(t.Context(), engine.LoadOptions{Path: path + ".missing"}); err == nil {
		t.Fatal("loaded a missing file")
	}
	llm, err := e.LoadLLM(t.Context(), engine.LoadOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context, req engine.GenerateRequest) (string, engine.GenerateResult, error) {
		var out strings.Builder
		res, err := llm.Generate(ctx, req, func(s string) error { out.WriteString(s); return nil })
		return out.String(), res, err
	}
	if out, res, err := run(t.Context(), engine.GenerateRequest{Prompt: "the cat sat"}); err != nil || out != " the cat sat" || res.FinishReason != engine.FinishStop || res.CompletionTokens != 3 {
		t.Errorf("echo: %q %+v %v", out, res, err)
	}
	if out, res, _ := run(t.Context(), engine.GenerateRequest{Prompt: "a b c d", MaxTokens: 2}); out != " a b" || res.FinishReason != engine.FinishLength {
		t.Errorf("max tokens: %q %+v", out, res)
	}
	if out, _, _ := run(t.Context(), engine.GenerateRequest{Prompt: "one two three", Stop: []string{" th"}}); out != " one two" {
		t.Errorf("stop: %q", out)
	}
	if out, _, _ := run(t.Context(), engine.GenerateRequest{Prompt: "x", IgnoreEOS: true, MaxTokens: 3}); out != " x more more" {
		t.Errorf("ignore eos: %q", out)
	}
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	_, err = llm.Generate(ctx, engine.GenerateRequest{Prompt: "x", IgnoreEOS: true}, func(string) error {
		if n++; n == 5 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("until cancelled: %v", err)
	}
	if st := llm.Stats(); st.Requests < 4 || st.Active != 0 {
		t.Errorf("stats %+v", st)
	}
	llm.Close()
	if _, _, err := run(t.Context(), engine.GenerateRequest{Prompt: "x"}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

func TestFakeEngineQueuesPastItsSlotsAndHoldsAtTheGate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := enginetest.Engine{Gate: make(chan struct{})}
	llm, err := e.LoadLLM(t.Context(), engine.LoadOptions{Path: path, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { llm.Close() })
	generate := func(ctx context.Context, out chan<- error) {
		_, err := llm.Generate(ctx, engine.GenerateRequest{Prompt: "hi"}, func(string) error { return nil })
		out <- err
	}
	first, second := make(chan error, 1), make(chan error, 1)
	go generate(t.Context(), first)
	waitStats(t, llm, engine.Stats{Active: 1})
	ctx, cancel := context.WithCancel(t.Context())
	go generate(ctx, second)
	waitStats(t, llm, engine.Stats{Active: 1, Queued: 1})

	cancel() // a queued request leaves the queue when its context ends
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while queued: %v", err)
	}
	waitStats(t, llm, engine.Stats{Active: 1})
	select {
	case err := <-first:
		t.Fatalf("the gate let a request through while closed: %v", err)
	default:
	}
	close(e.Gate)
	if err := <-first; err != nil {
		t.Fatalf("after the gate opened: %v", err)
	}
	if st := llm.Stats(); st.Active != 0 || st.Queued != 0 || st.Requests != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// waitStats polls until the model's running and queued requests are want's: a liveness bound
// for goroutines to reach the engine, not a timing check.
func waitStats(t *testing.T, llm engine.LLM, want engine.Stats) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for st := llm.Stats(); st.Active != want.Active || st.Queued != want.Queued; st = llm.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want %d active and %d queued", st, want.Active, want.Queued)
		}
		time.Sleep(time.Millisecond)
	}
}
