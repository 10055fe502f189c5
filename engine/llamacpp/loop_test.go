package llamacpp

import (
	"testing"
	"time"
)

// TestPromptBudget checks the step cost model: from generation-only steps and mixed steps it
// allows as many prompt tokens as keep a step within promptSlowdown times a generation step.
func TestPromptBudget(t *testing.T) {
	var c stepCost
	if got := c.promptBudget(4); got != firstPromptChunk {
		t.Fatalf("budget before any step = %d, want %d", got, firstPromptChunk)
	}
	// A generation step costs 2 ms per sequence; a prompt token next to them adds 1 ms.
	cost := func(gen, prompt int) time.Duration {
		return time.Duration(gen)*2*time.Millisecond + time.Duration(prompt)*time.Millisecond
	}
	for range 30 {
		c.observe(4, 4, cost(4, 0))
		c.observe(4, 14, cost(4, 10))
		c.observe(0, 512, 100*time.Millisecond) // a prompt alone says nothing of mixed steps
	}
	// 4 generating: 8 ms; (1.6-1)*8 ms buys 4.8 ms of prompt: 4.8 tokens, at least the minimum.
	if got, want := c.promptBudget(4), max(4, minPromptChunk); got != want {
		t.Errorf("budget with 4 generating = %d, want %d", got, want)
	}
	// 16 generating, never measured alone: the nearest count measured (4) stands in.
	if got := c.promptBudget(16); got != c.promptBudget(4) {
		t.Errorf("budget with 16 generating = %d, want that of 4, %d", got, c.promptBudget(4))
	}
	c.observe(16, 16, cost(16, 0))
	if got := c.promptBudget(16); got < 18 || got > 20 {
		t.Errorf("budget with 16 generating = %d, want about 19 ((1.6-1)*32 ms / 1 ms)", got)
	}
	// Never below the minimum, so prompts progress.
	var slow stepCost
	for range 20 {
		slow.observe(1, 1, time.Millisecond)
		slow.observe(1, 101, time.Second)
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
