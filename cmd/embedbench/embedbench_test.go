package main

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// TestEmbedReadsBothShapes posts to a stand-in for each server's answer (the shapes are OpenAI's
// and Ollama's, boundaries we do not own) and checks that both read as the same vectors.
func TestEmbedReadsBothShapes(t *testing.T) {
	vecs := [][]float64{{1, 0}, {0.6, 0.8}}
	tests := []struct {
		name   string
		answer map[string]any
	}{
		{"openai", map[string]any{"object": "list", "data": []map[string]any{
			{"index": 0, "embedding": vecs[0]}, {"index": 1, "embedding": vecs[1]}}, "usage": map[string]any{"prompt_tokens": 7}}},
		{"ollama", map[string]any{"model": "bench", "embeddings": vecs, "prompt_eval_count": 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body struct {
					Model string   `json:"model"`
					Input []string `json:"input"`
				}
				if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Model != "bench" || len(body.Input) != 2 {
					http.Error(w, "bad request", http.StatusBadRequest)
					return
				}
				_ = json.NewEncoder(w).Encode(tt.answer)
			}))
			t.Cleanup(srv.Close)
			c := &client{http: srv.Client(), model: "bench"}
			got, tokens, err := c.embed(t.Context(), srv.URL, []string{"a", "b"})
			if err != nil {
				t.Fatal(err)
			}
			if tokens != 7 || !slices.EqualFunc(got, vecs, slices.Equal) {
				t.Errorf("got %v (%d tokens), want %v (7 tokens)", got, tokens, vecs)
			}
		})
	}
}

func TestEmbedReportsServerError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"model not found"}`, http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	c := &client{http: srv.Client(), model: "bench"}
	if _, _, err := c.embed(t.Context(), srv.URL, []string{"a"}); err == nil {
		t.Fatal("no error for a 404")
	}
}

func TestCosine(t *testing.T) {
	tests := []struct {
		name string
		a, b []float64
		want float64
	}{
		{"same direction", []float64{1, 2}, []float64{2, 4}, 1},
		{"orthogonal", []float64{1, 0}, []float64{0, 3}, 0},
		{"opposite", []float64{1, 1}, []float64{-1, -1}, -1},
		{"different dimensions", []float64{1}, []float64{1, 0}, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cosine(tt.a, tt.b)
			if math.IsNaN(tt.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tt.want) > 1e-12) {
				t.Errorf("cosine = %v, want %v", got, tt.want)
			}
		})
	}
}
