package llamacpp_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
)

func load(t *testing.T, opts engine.LoadOptions) engine.LLM {
	t.Helper()
	opts.Path = modelPath
	if opts.Threads == 0 {
		opts.Threads = 1
	}
	llm, err := llamacpp.New().LoadLLM(t.Context(), opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { llm.Close() })
	return llm
}

func greedy() engine.Sampling {
	s := engine.DefaultSampling()
	s.Temperature = 0
	return s
}

func generate(t *testing.T, llm engine.LLM, req engine.GenerateRequest) (string, []string, engine.GenerateResult) {
	t.Helper()
	var pieces []string
	res, err := llm.Generate(t.Context(), req, func(s string) error {
		pieces = append(pieces, s)
		return nil
	})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	return strings.Join(pieces, ""), pieces, res
}

func TestGenerateStreamsTokens(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	req := engine.GenerateRequest{
		Messages:  []engine.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hello there"}},
		Sampling:  engine.DefaultSampling(),
		MaxTokens: 24,
		IgnoreEOS: true,
	}
	req.Sampling.Seed = 7
	text, pieces, res := generate(t, llm, req)
	if res.CompletionTokens == 0 || len(pieces) == 0 {
		t.Fatalf("no tokens generated: %+v", res)
	}
	if res.CompletionTokens > 24 {
		t.Fatalf("generated %d tokens, max 24", res.CompletionTokens)
	}
	if res.FinishReason == engine.FinishLength && res.CompletionTokens != 24 {
		t.Fatalf("finish length after %d tokens", res.CompletionTokens)
	}
	for _, p := range pieces {
		if !utf8.ValidString(p) {
			t.Fatalf("piece %q is not valid UTF-8", p)
		}
	}
	if res.PromptTokens < 5 {
		t.Fatalf("prompt tokens = %d: the chat template was not applied?", res.PromptTokens)
	}
	t.Logf("generated %q (%d tokens, %s)", text, res.CompletionTokens, res.FinishReason)

	// The same seed gives the same text.
	again, _, _ := generate(t, llm, req)
	if again != text {
		t.Fatalf("same seed, different text:\n%q\n%q", text, again)
	}
}

func TestPromptPrefixReuse(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	req := engine.GenerateRequest{Prompt: "The quick brown fox jumps over the lazy dog", Sampling: greedy(), MaxTokens: 4}
	_, _, first := generate(t, llm, req)
	req.Prompt += " again"
	_, _, second := generate(t, llm, req)
	if first.CachedPromptTokens != 0 {
		t.Fatalf("first request reused %d tokens from nowhere", first.CachedPromptTokens)
	}
	if second.CachedPromptTokens == 0 || second.CachedPromptTokens >= second.PromptTokens {
		t.Fatalf("second request reused %d of %d prompt tokens", second.CachedPromptTokens, second.PromptTokens)
	}
}

func TestStopStringAndGrammar(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	req := engine.GenerateRequest{
		Prompt:   "Say it:",
		Sampling: engine.DefaultSampling(),
		Grammar:  `root ::= "alpha beta STOP gamma delta"`,
		Stop:     []string{"STOP"},
	}
	text, _, res := generate(t, llm, req)
	if text != "alpha beta " || res.FinishReason != engine.FinishStop {
		t.Fatalf("got %q (%s), want %q cut at the stop string", text, res.FinishReason, "alpha beta ")
	}
}

func TestJSONSchemaOutput(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	schema := `{"type":"object","properties":{"color":{"enum":["red","green","blue"]},"ok":{"type":"boolean"},"n":{"type":"integer","minimum":0,"maximum":9}},"required":["color","ok","n"],"additionalProperties":false}`
	for seed := uint32(1); seed <= 3; seed++ {
		req := engine.GenerateRequest{
			Messages:   []engine.Message{{Role: "user", Content: "Give me JSON"}},
			Sampling:   engine.DefaultSampling(),
			JSONSchema: schema,
			MaxTokens:  200,
		}
		req.Sampling.Seed = seed
		text, _, res := generate(t, llm, req)
		var got struct {
			Color *string `json:"color"`
			OK    *bool   `json:"ok"`
			N     *int    `json:"n"`
		}
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("seed %d: output %q (%s) is not the schema's JSON: %v", seed, text, res.FinishReason, err)
		}
		if got.Color == nil || got.OK == nil || got.N == nil || *got.N < 0 || *got.N > 9 ||
			(*got.Color != "red" && *got.Color != "green" && *got.Color != "blue") {
			t.Fatalf("seed %d: %q does not match the schema", seed, text)
		}
	}
}

func TestBadSchemaAndGrammar(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	for name, req := range map[string]engine.GenerateRequest{
		"schema":  {Prompt: "x", JSONSchema: `{"type": 12}`},
		"grammar": {Prompt: "x", Grammar: `root ::= (`},
	} {
		_, err := llm.Generate(t.Context(), req, func(string) error { return nil })
		if !errors.Is(err, engine.ErrInvalidRequest) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", name, err)
		}
	}
}

func TestCancelFreesTheSlot(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	done := make(chan error, 1)
	go func() {
		_, err := llm.Generate(ctx, engine.GenerateRequest{Prompt: "Once upon a time", Sampling: engine.DefaultSampling(), IgnoreEOS: true}, func(string) error {
			n++
			if n == 3 {
				cancel()
			}
			return nil
		})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("generation did not stop after cancel")
	}
	// The only slot is free again: the next request runs at once.
	qctx, qcancel := context.WithTimeout(t.Context(), time.Minute)
	defer qcancel()
	res, err := llm.Generate(qctx, engine.GenerateRequest{Prompt: "Next", Sampling: greedy(), MaxTokens: 3, IgnoreEOS: true}, func(string) error { return nil })
	if err != nil || res.CompletionTokens == 0 {
		t.Fatalf("request after cancel: %v %+v", err, res)
	}
}

func TestEmitErrorStops(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	errGone := errors.New("client went away")
	_, err := llm.Generate(t.Context(), engine.GenerateRequest{Prompt: "Hi", Sampling: engine.DefaultSampling(), IgnoreEOS: true}, func(string) error { return errGone })
	if !errors.Is(err, errGone) {
		t.Fatalf("err = %v, want the emit error", err)
	}
}

func TestPromptLongerThanContext(t *testing.T) {
	llm := load(t, engine.LoadOptions{ContextLength: 256})
	_, err := llm.Generate(t.Context(), engine.GenerateRequest{Prompt: strings.Repeat("hello world ", 200), Sampling: greedy()}, func(string) error { return nil })
	var ce *engine.ContextExceededError
	if !errors.As(err, &ce) || ce.Limit != 256 || !errors.Is(err, engine.ErrContextExceeded) {
		t.Fatalf("err = %v, want ContextExceededError with limit 256", err)
	}
	if !strings.Contains(err.Error(), "256") {
		t.Fatalf("message %q does not state the limit", err)
	}
	// Generation that fills the context ends with "length".
	_, _, res := generate(t, llm, engine.GenerateRequest{Prompt: "hello", Sampling: engine.DefaultSampling(), IgnoreEOS: true})
	if res.FinishReason != engine.FinishLength || res.PromptTokens+res.CompletionTokens > 256 {
		t.Fatalf("filling the context: %+v", res)
	}
}

func TestQueuedRequestsAllComplete(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := llm.Generate(t.Context(), engine.GenerateRequest{
				Prompt: strings.Repeat("word ", i+1), Sampling: greedy(), MaxTokens: 8,
			}, func(string) error { return nil })
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gguf")
	if err := writeFile(bad, []byte("GGUF this is not a model")); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"missing": filepath.Join(dir, "none.gguf"), "corrupt": bad} {
		if _, err := llamacpp.New().LoadLLM(t.Context(), engine.LoadOptions{Path: path}); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
}
