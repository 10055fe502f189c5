package llamacpp_test

import (
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

func TestRerankScoresEachDocument(t *testing.T) {
	dir := t.TempDir()
	rankPath, meanPath := filepath.Join(dir, "rank.gguf"), filepath.Join(dir, "mean.gguf")
	if err := tinygguf.Write(rankPath, tinygguf.Options{Arch: "bert", Seed: 4, Pooling: "rank"}); err != nil {
		t.Fatal(err)
	}
	if err := tinygguf.Write(meanPath, tinygguf.Options{Arch: "bert", Seed: 4}); err != nil {
		t.Fatal(err)
	}
	eng := llamacpp.New()
	r, err := eng.LoadReranker(t.Context(), engine.LoadOptions{Path: rankPath, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	docs := []string{"the cat sat on the mat", "stock markets fell today", "a cat", "rain in the mountains"}
	res, err := r.Rerank(t.Context(), engine.RerankRequest{Query: "where is the cat", Documents: docs})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Scores) != len(docs) || res.PromptTokens == 0 || r.Info().Pooling != "rank" {
		t.Fatalf("%d scores, %d tokens, pooling %q", len(res.Scores), res.PromptTokens, r.Info().Pooling)
	}
	for i, doc := range docs {
		alone, err := r.Rerank(t.Context(), engine.RerankRequest{Query: "where is the cat", Documents: []string{doc}})
		if err != nil {
			t.Fatal(err)
		}
		if d := math.Abs(float64(alone.Scores[0] - res.Scores[i])); d > 1e-4 {
			t.Errorf("document %d: packed %g, alone %g", i, res.Scores[i], alone.Scores[0])
		}
	}
	if res.Scores[0] == res.Scores[1] {
		t.Error("different documents got the same score")
	}
	if _, err := r.Rerank(t.Context(), engine.RerankRequest{Query: "q"}); !errors.Is(err, engine.ErrInvalidRequest) {
		t.Errorf("no documents: %v", err)
	}
	if _, err := eng.LoadReranker(t.Context(), engine.LoadOptions{Path: meanPath, Threads: 1}); err == nil {
		t.Error("an embeddings model loaded as a reranker")
	}
	if _, err := eng.LoadEmbedder(t.Context(), engine.LoadOptions{Path: rankPath, Threads: 1}); err == nil {
		t.Error("a reranker loaded as an embeddings model")
	}
}
