package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node/config"
)

// BenchmarkHTTPStreamVsDirect compares generation speed through the whole HTTP path (OpenAI
// streaming, SSE parsing by a client) with the engine called directly, on the same model file
// in the same process, alternating the two. It reports both rates and http/direct.
func BenchmarkHTTPStreamVsDirect(b *testing.B) {
	path := os.Getenv("SYN4PSE_BENCH_MODEL")
	if path == "" {
		path = filepath.Join(b.TempDir(), "bench.gguf")
		if err := tinygguf.Write(path, tinygguf.Options{Arch: "llama", Size: "bench", Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
	const tokens = 48
	decl := config.Model{Name: "bench", Modality: "llm", Engine: "llama_cpp", Path: path, Enabled: true,
		BatchSize: 512, Parallel: 1, FlashAttention: "auto", ContextLength: 512}
	n := startNodeB(b, decl)
	direct, err := llamacpp.New().LoadLLM(b.Context(), engine.LoadOptions{Path: path, ContextLength: 512, BatchSize: 512, Parallel: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()

	var directRate, httpRate float64
	b.ResetTimer()
	for i := range b.N {
		prompt := fmt.Sprintf("%d The history of the world, chapter", i)
		sampling := engine.DefaultSampling()
		sampling.Temperature = 0
		res, err := direct.Generate(b.Context(), engine.GenerateRequest{Prompt: prompt, Sampling: sampling, MaxTokens: tokens, IgnoreEOS: true}, func(string) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		directRate += float64(res.CompletionTokens) / res.GenerateDuration.Seconds()
		httpRate += streamRate(b, n.HTTPAddr(), prompt, tokens)
	}
	directRate /= float64(b.N)
	httpRate /= float64(b.N)
	b.ReportMetric(directRate, "direct_tok/s")
	b.ReportMetric(httpRate, "http_tok/s")
	b.ReportMetric(httpRate/directRate, "http/direct")
}

// streamRate streams a completion over HTTP and returns the client-side rate from the first
// token to the last, the span the engine's generation time covers.
func streamRate(b *testing.B, addr, prompt string, tokens int) float64 {
	body := fmt.Sprintf(`{"model":"bench","stream":true,"temperature":0,"max_tokens":%d,"ignore_eos":true,"prompt":%q}`, tokens, prompt)
	res, err := http.Post("http://"+addr+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	var first, last time.Time
	generated := 0
	scanner := bufio.NewScanner(res.Body)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "data: {") {
			continue
		}
		if first.IsZero() {
			first = time.Now()
		}
		if strings.Contains(line, `"finish_reason":"`) {
			var chunk struct {
				Usage struct {
					CompletionTokens int `json:"completion_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &chunk); err != nil {
				b.Fatal(err)
			}
			generated = chunk.Usage.CompletionTokens
			break
		}
		last = time.Now()
	}
	if generated < 2 || !last.After(first) {
		b.Fatalf("stream generated %d tokens", generated)
	}
	// The tokens after the first arrived between the first and the last text event.
	return float64(generated-1) / last.Sub(first).Seconds()
}

func startNodeB(b *testing.B, decls ...config.Model) interface{ HTTPAddr() string } {
	b.Helper()
	n, err := startNodeFor(b.Context(), b.TempDir(), decls)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return n
}
