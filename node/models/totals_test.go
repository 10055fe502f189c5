package models_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/models"
)

// TestTotalsOutliveUnloads: a model's totals count every load, unload and generated token, and
// keep the work of an unloaded instance after the next load starts its stats from zero.
func TestTotalsOutliveUnloads(t *testing.T) {
	m, _ := catalog(t, models.Options{KeepAlive: time.Hour})
	generate := func(tokens int) {
		t.Helper()
		lease, err := m.Acquire(t.Context(), "a", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release()
		res, err := lease.LLM().Generate(t.Context(), engine.GenerateRequest{Prompt: "Once", Sampling: engine.DefaultSampling(),
			IgnoreEOS: true, MaxTokens: tokens}, func(string) error { return nil })
		if err != nil || res.CompletionTokens != tokens {
			t.Fatalf("generate %d: %+v, %v", tokens, res, err)
		}
	}
	generate(5)
	if err := m.Unload("a"); err != nil {
		t.Fatal(err)
	}
	generate(3)
	if s, _ := m.Status("a"); s.Stats.GeneratedTokens != 3 {
		t.Fatalf("the new instance's stats count %d tokens, want 3", s.Stats.GeneratedTokens)
	}
	got := m.Totals()["a"]
	if got.Loads != 2 || got.Unloads != 1 || got.LoadFailures != 0 || got.GeneratedTokens != 8 || got.GenerateTime <= 0 {
		t.Fatalf("totals of a = %+v, want 2 loads, 1 unload, 8 tokens", got)
	}
	if _, ok := m.Totals()["b"]; ok {
		t.Fatal("b was never loaded but has totals")
	}

	missing := newCatalog(t, models.Options{}, models.Decl{Name: "gone", Modality: "llm", Engine: engine.DefaultEngine,
		Path: filepath.Join(t.TempDir(), "gone.gguf"), Enabled: true})
	if err := missing.Load(t.Context(), "gone", nil); err == nil {
		t.Fatal("a missing file loaded")
	}
	if got := missing.Totals()["gone"]; got.LoadFailures != 1 || got.Loads != 0 {
		t.Fatalf("totals of a failed load = %+v", got)
	}
}
