package llamacpp_test

import (
	"bytes"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
)

// TestLogprobs checks the log-probabilities of greedy generation on the tiny model: every one
// ≤ 0, the chosen token at least as likely as each alternative, the alternatives as many as
// asked and sorted, and the tokens' bytes spelling the text.
func TestLogprobs(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	for _, top := range []int{0, 1, 5, 20} {
		var lps []engine.TokenLogprob
		req := engine.GenerateRequest{
			Prompt: "Once upon a time", Sampling: greedy(), MaxTokens: 12, IgnoreEOS: true,
			Logprobs: true, TopLogprobs: top,
			OnToken: func(lp engine.TokenLogprob) error { lps = append(lps, lp); return nil },
		}
		text, _, res := generate(t, llm, req)
		if len(lps) != res.CompletionTokens {
			t.Fatalf("top %d: %d logprobs for %d tokens", top, len(lps), res.CompletionTokens)
		}
		var spelled []byte
		for i, lp := range lps {
			spelled = append(spelled, lp.Bytes...)
			if lp.Logprob > 0 {
				t.Errorf("top %d: token %d logprob %v > 0", top, i, lp.Logprob)
			}
			if len(lp.Top) != top {
				t.Fatalf("top %d: token %d has %d alternatives", top, i, len(lp.Top))
			}
			for j, alt := range lp.Top {
				if alt.Logprob > lp.Logprob {
					t.Errorf("top %d: token %d: greedy chose %q (%v) over %q (%v)", top, i, lp.Token, lp.Logprob, alt.Token, alt.Logprob)
				}
				if j > 0 && alt.Logprob > lp.Top[j-1].Logprob {
					t.Errorf("top %d: token %d: alternatives not sorted: %v", top, i, lp.Top)
				}
			}
			if top > 0 && !bytes.Equal(lp.Top[0].Bytes, lp.Bytes) {
				t.Errorf("top %d: token %d: greedy chose %q, the most likely is %q", top, i, lp.Token, lp.Top[0].Token)
			}
		}
		if string(spelled) != text {
			t.Errorf("top %d: tokens spell %q, text is %q", top, spelled, text)
		}
	}
}

func TestTopLogprobsBounded(t *testing.T) {
	llm := load(t, engine.LoadOptions{})
	req := engine.GenerateRequest{Prompt: "Hi", Sampling: greedy(), Logprobs: true, TopLogprobs: 21,
		OnToken: func(engine.TokenLogprob) error { return nil }}
	if _, err := llm.Generate(t.Context(), req, func(string) error { return nil }); err == nil {
		t.Fatal("top_logprobs 21 accepted")
	}
}
