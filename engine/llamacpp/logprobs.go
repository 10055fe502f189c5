package llamacpp

import (
	"math"
	"strings"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// tokenLogprob is the log-probability of token under logits, a log-softmax over the whole
// vocabulary (one pass for the normalizer, one for the top alternatives: the cost of asking
// for logprobs), with the top most likely tokens. The logits are the model's raw output: the
// sampler's temperature, penalties, truncation and grammar work on a copy and do not show here.
func tokenLogprob(m *native.Model, logits []float32, token int32, top int) engine.TokenLogprob {
	logZ := logSumExp(logits)
	lp := engine.TokenLogprob{TopLogprob: topLogprob(m, token, logits[token]-logZ)}
	for _, t := range topTokens(logits, top) {
		lp.Top = append(lp.Top, topLogprob(m, t, logits[t]-logZ))
	}
	return lp
}

func topLogprob(m *native.Model, token int32, logprob float32) engine.TopLogprob {
	b := m.AppendPiece(nil, token, false)
	return engine.TopLogprob{Token: strings.ToValidUTF8(string(b), "\uFFFD"), Bytes: b, Logprob: min(logprob, 0)}
}

// logSumExp is log Σ exp(x), computed stably around the largest x.
func logSumExp(xs []float32) float32 {
	hi := float32(math.Inf(-1))
	for _, x := range xs {
		hi = max(hi, x)
	}
	var sum float64
	for _, x := range xs {
		sum += math.Exp(float64(x - hi))
	}
	return hi + float32(math.Log(sum))
}

// topTokens returns the n tokens of highest logit, highest first (lower id first on ties).
func topTokens(logits []float32, n int) []int32 {
	n = min(n, len(logits))
	top := make([]int32, 0, n+1)
	for i, x := range logits {
		if n == 0 || len(top) == n && x <= logits[top[n-1]] {
			continue
		}
		// Insert i after the kept tokens with a logit at least x's, dropping the last beyond n.
		j := len(top)
		for j > 0 && logits[top[j-1]] < x {
			j--
		}
		top = append(top, 0)
		copy(top[j+1:], top[j:])
		top[j] = int32(i)
		top = top[:min(len(top), n)]
	}
	return top
}
