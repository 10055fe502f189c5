package llamacpp_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

var qwen2vl struct {
	once             sync.Once
	model, projector string
	err              error
}

// loadQwen2VL loads a generated Qwen2-VL pair: an LLM with M-RoPE positions and its
// qwen2vl_merger vision projector.
func loadQwen2VL(t *testing.T, opts engine.LoadOptions) engine.LLM {
	t.Helper()
	qwen2vl.once.Do(func() {
		qwen2vl.model, qwen2vl.projector, qwen2vl.err = tinygguf.WriteQwen2VL(filepath.Dir(modelPath), 1)
	})
	if qwen2vl.err != nil {
		t.Fatal(qwen2vl.err)
	}
	opts.Path, opts.Projector = qwen2vl.model, qwen2vl.projector
	if opts.Threads == 0 {
		opts.Threads = 2
	}
	began := time.Now()
	llm, err := llamacpp.New().LoadLLM(t.Context(), opts)
	if err != nil {
		t.Fatalf("load qwen2vl: %v", err)
	}
	t.Cleanup(func() { llm.Close() })
	t.Logf("qwen2vl model and projector loaded in %v", time.Since(began))
	return llm
}

// TestQwen2VLImage runs chats with an image through a model with M-RoPE positions: mtmd
// evaluates the image's embeddings with 2-D positions (an image of w×h tokens takes w·h KV
// cells but max(w, h) positions) and the loop generates on from the position mtmd ends at.
// One slot serves all the requests: media prompts share no prefix, text prompts after them do.
func TestQwen2VLImage(t *testing.T) {
	llm := loadQwen2VL(t, engine.LoadOptions{})
	_, _, plain := generate(t, llm, imageRequest(1))
	// clip.cpp resizes a Qwen2-VL image, keeping its aspect, to multiples of
	// Qwen2VLTokenPixels of at least 8 tokens: 40×24 becomes 64×48 (4×3 tokens), 128×128 stays.
	small, large := encodeImage(t, "png", testImage(40, 24)), encodeImage(t, "jpeg", testImage(128, 128))
	const side = tinygguf.Qwen2VLTokenPixels
	smallTokens, largeTokens := (64/side)*(48/side), (128/side)*(128/side)

	var first string
	for i, c := range []struct {
		name   string
		image  []byte
		tokens int
	}{{"small", small, smallTokens}, {"small again", small, smallTokens}, {"large", large, largeTokens}} {
		text, _, res := generate(t, llm, imageRequest(8, c.image))
		if res.CompletionTokens != 8 || res.FinishReason != engine.FinishLength || res.CachedPromptTokens != 0 {
			t.Fatalf("%s: result %+v, want 8 tokens and no cached prompt", c.name, res)
		}
		// The image's tokens and mtmd's <|vision_start|> and <|vision_end|> around them, and the
		// text split at the marker.
		if extra := res.PromptTokens - plain.PromptTokens - c.tokens; extra < 2 || extra > 4 {
			t.Errorf("%s: prompt of %d tokens, %d without the image: want %d image tokens and a few of text", c.name, res.PromptTokens, plain.PromptTokens, c.tokens)
		}
		switch i {
		case 0:
			first = text
		case 1:
			if text != first {
				t.Errorf("the same image request again generated %q, first %q", text, first)
			}
		}
		t.Logf("%s image: prompt of %d tokens read in %v, 8 tokens generated in %v: %q",
			c.name, res.PromptTokens, res.PromptDuration, res.GenerateDuration, text)
	}
	// A text request in the slot an image request left: it reuses nothing of it, and its own
	// prefix again on the next request.
	_, _, after := generate(t, llm, imageRequest(1))
	_, _, again := generate(t, llm, imageRequest(1))
	if after.CachedPromptTokens != 0 || again.CachedPromptTokens != again.PromptTokens-1 {
		t.Errorf("text after images: cached %d, then %d of %d, want 0 then all but the last", after.CachedPromptTokens, again.CachedPromptTokens, again.PromptTokens)
	}
}

// TestQwen2VLFillsContext generates until the sequence is full after an image of 8×8 tokens in
// 8 positions: the loop counts the KV cells the image fills, not its positions, and ends the
// request at the context length instead of running out of cache.
func TestQwen2VLFillsContext(t *testing.T) {
	const ctx = 256
	llm := loadQwen2VL(t, engine.LoadOptions{ContextLength: ctx})
	_, _, res := generate(t, llm, imageRequest(0, encodeImage(t, "png", testImage(128, 128))))
	if res.FinishReason != engine.FinishLength || res.PromptTokens+res.CompletionTokens != ctx {
		t.Fatalf("result %+v, want a prompt and completion of %d tokens ending at the length", res, ctx)
	}
}
