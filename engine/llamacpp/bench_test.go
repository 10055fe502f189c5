package llamacpp_test

import (
	"cmp"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// benchModel is $SYN4PSE_BENCH_MODEL, or a generated model of the "bench" size (a few hundred
// MB, F16) so that the numbers reflect matrix work rather than call overhead. BENCH_SIZE picks
// another tinygguf size ("wide": the width where AMX engages) and BENCH_QUANT quantizes the
// generated model (q4_0, q8_0, q4_k_m).
func benchModel(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("SYN4PSE_BENCH_MODEL"); p != "" {
		return p
	}
	size := cmp.Or(os.Getenv("BENCH_SIZE"), "bench")
	path := filepath.Join(b.TempDir(), "bench.gguf")
	if err := tinygguf.Write(path, tinygguf.Options{Arch: "llama", Size: size, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	if quant := os.Getenv("BENCH_QUANT"); quant != "" {
		quantized := filepath.Join(b.TempDir(), "bench-"+quant+".gguf")
		if err := llamacpp.Quantize(path, quantized, quant, 0); err != nil {
			b.Fatal(err)
		}
		return quantized
	}
	return path
}

// BenchmarkGenerate measures prompt processing (pp, 128 tokens) and generation (tg, 32 tokens)
// in tokens/s, as llama-bench does. scripts/bench-build.sh runs it in two builds of ggml.
func BenchmarkGenerate(b *testing.B) {
	llm, err := llamacpp.New().LoadLLM(b.Context(), engine.LoadOptions{Path: benchModel(b), ContextLength: 512})
	if err != nil {
		b.Fatal(err)
	}
	defer llm.Close()
	sampling := engine.DefaultSampling()
	sampling.Temperature = 0
	var ppTokens, tgTokens int
	var ppSeconds, tgSeconds float64
	b.ResetTimer()
	for i := range b.N {
		// A prompt that differs from the last one in its first token, so no prefix is reused.
		prompt := strings.Repeat(string(rune('a'+i%26))+" the cat sat on the mat ", 20)
		res, err := llm.Generate(b.Context(), engine.GenerateRequest{Prompt: prompt, Sampling: sampling, MaxTokens: 32, IgnoreEOS: true}, func(string) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		ppTokens += res.PromptTokens - res.CachedPromptTokens
		ppSeconds += res.PromptDuration.Seconds()
		tgTokens += res.CompletionTokens
		tgSeconds += res.GenerateDuration.Seconds()
	}
	b.ReportMetric(float64(ppTokens)/ppSeconds, "pp_tok/s")
	b.ReportMetric(float64(tgTokens)/tgSeconds, "tg_tok/s")
}

// BenchmarkLoad measures loading the benchmark model (mmap, 512-token context) and freeing it,
// with the file in the page cache, as after a recent pull.
func BenchmarkLoad(b *testing.B) {
	path := benchModel(b)
	eng := llamacpp.New()
	for b.Loop() {
		llm, err := eng.LoadLLM(b.Context(), engine.LoadOptions{Path: path, ContextLength: 512})
		if err != nil {
			b.Fatal(err)
		}
		llm.Close()
	}
}
