package llamacpp

import (
	"testing"
	"time"
)

// TestPromptBudget checks the step cost model: from generation-only steps and steps with
// prompt tokens it allows as many prompt tokens as keep a step within promptSlowdown times a
// generation step.
func TestPromptBudget(t *testing.T) {
	var c stepCost
	if got := c.promptBudget(4); got != firstPromptChunk {
		t.Fatalf("budget before any step = %d, want %d", got, firstPromptChunk)
	}
	// A step costs 4 ms plus 0.5 ms per token.
	cost := func(n int) time.Duration { return 4*time.Millisecond + time.Duration(n)*500*time.Microsecond }
	for range 20 {
		c.observe(4, 4, cost(4))
		c.observe(0, 512, cost(512))
		c.observe(4, 100, cost(100))
	}
	// A step of 4 generating tokens takes 6 ms; (1.8-1)*6 ms buys 4.8 ms of prompt: 9 tokens.
	if got := c.promptBudget(4); got < 9 || got > 10 {
		t.Errorf("budget = %d, want 9", got)
	}
	// With more sequences generating, a step is longer and carries more prompt.
	if more, fewer := c.promptBudget(16), c.promptBudget(4); more <= fewer {
		t.Errorf("budget with 16 generating %d <= with 4 %d", more, fewer)
	}
	// Never below the minimum, so prompts progress.
	var slow stepCost
	for range 20 {
		slow.observe(1, 1, time.Millisecond)
		slow.observe(0, 101, 101*time.Second)
	}
	if got := slow.promptBudget(1); got != minPromptChunk {
		t.Errorf("budget when prompt tokens are costly = %d, want %d", got, minPromptChunk)
	}
}

func TestPickSlot(t *testing.T) {
	free := []*slot{
		{seq: 0, tokens: []int32{1, 2, 3}, used: 5},
		{seq: 1, tokens: []int32{1, 2, 9, 9}, used: 1},
		{seq: 2, tokens: nil, used: 3},
	}
	if s := pickSlot(free, []int32{1, 2, 3, 4}); s.seq != 0 {
		t.Errorf("longest shared prefix: got slot %d, want 0", s.seq)
	}
	if s := pickSlot(free, []int32{7, 7}); s.seq != 1 {
		t.Errorf("no shared prefix: got slot %d, want the least recently used, 1", s.seq)
	}
}
