package llamacpp

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestLogSoftmax checks that the probabilities of a whole vocabulary sum to 1 and that
// topTokens agrees with a full sort.
func TestLogSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, 5000)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64()*4 + 30)
	}
	logZ := logSumExp(logits)
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x - logZ))
	}
	if math.Abs(sum-1) > 1e-4 {
		t.Errorf("probabilities sum to %v", sum)
	}
	all := make([]int32, len(logits))
	for i := range all {
		all[i] = int32(i)
	}
	slices.SortStableFunc(all, func(a, b int32) int {
		switch {
		case logits[a] > logits[b]:
			return -1
		case logits[a] < logits[b]:
			return 1
		}
		return 0
	})
	for _, n := range []int{0, 1, 7, 20} {
		if got := topTokens(logits, n); !slices.Equal(got, all[:n]) {
			t.Errorf("topTokens(%d) = %v, want %v", n, got, all[:n])
		}
	}
}
