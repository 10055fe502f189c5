package llamacpp_test

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkConcurrentStreams measures what continuous batching buys, in one process on the
// same model: the generation rate of one stream, the aggregate rate of 8 concurrent streams
// (and its ratio to one stream), and the time between tokens of 4 streams before and while a
// 2,000-token prompt is read (its ratio is what a long prompt costs the others).
func BenchmarkConcurrentStreams(b *testing.B) {
	const streams, tokens = 8, 64
	llm, err := llamacpp.New().LoadLLM(b.Context(), engine.LoadOptions{Path: benchModel(b), ContextLength: 4096, Parallel: streams})
	if err != nil {
		b.Fatal(err)
	}
	defer llm.Close()
	sampling := engine.DefaultSampling()
	sampling.Temperature = 0
	run := func(prompt string, max int, emit func(string) error) engine.GenerateResult {
		res, err := llm.Generate(b.Context(), engine.GenerateRequest{Prompt: prompt, Sampling: sampling, MaxTokens: max, IgnoreEOS: true}, emit)
		if err != nil && !errors.Is(err, errStopBench) {
			b.Error(err)
		}
		return res
	}
	none := func(string) error { return nil }
	var one, many, gapBefore, gapDuring float64
	b.ResetTimer()
	for i := range b.N {
		res := run(fmt.Sprintf("%d one stream", i), tokens, none)
		one += float64(res.CompletionTokens) / res.GenerateDuration.Seconds()

		start := time.Now()
		var wg sync.WaitGroup
		var generated atomic.Int64
		for s := range streams {
			wg.Go(func() {
				res := run(fmt.Sprintf("%d stream %d", i, s), tokens, none)
				generated.Add(int64(res.CompletionTokens))
			})
		}
		wg.Wait()
		many += float64(generated.Load()) / time.Since(start).Seconds()

		before, during, longTokens := longPromptGaps(run, i)
		b.ReportMetric(float64(longTokens), "long_prompt_tokens")
		gapBefore += before.Seconds()
		gapDuring += during.Seconds()
	}
	n := float64(b.N)
	b.ReportMetric(one/n, "one_tok/s")
	b.ReportMetric(many/n, "8x_tok/s")
	b.ReportMetric(many/one, "8x/one")
	b.ReportMetric(gapDuring/gapBefore, "gap_long/gap")
}

// longPromptGaps runs 4 streams, then sends a 2,000-token prompt, and returns the streams'
// mean time between tokens before it and while it is read.
func longPromptGaps(run func(string, int, func(string) error) engine.GenerateResult, i int) (before, during time.Duration, promptTokens int) {
	var mu sync.Mutex
	var phase int // 0 before the long prompt, 1 while it is read, 2 after
	var sums [2]time.Duration
	var counts [2]int
	ctx := make(chan struct{})
	var started sync.WaitGroup
	started.Add(4)
	var wg sync.WaitGroup
	for s := range 4 {
		wg.Go(func() {
			last := time.Time{}
			first := true
			run(fmt.Sprintf("%d gap stream %d", i, s), 600, func(string) error {
				now := time.Now()
				mu.Lock()
				if !last.IsZero() && phase < 2 {
					sums[phase] += now.Sub(last)
					counts[phase]++
				}
				mu.Unlock()
				last = now
				if first {
					first = false
					started.Done()
				}
				select {
				case <-ctx:
					return errStopBench
				default:
				}
				return nil
			})
		})
	}
	started.Wait()
	time.Sleep(200 * time.Millisecond) // some gaps before
	mu.Lock()
	phase = 1
	mu.Unlock()
	res := run(strings.Repeat("the long prompt arrives now ", 118), 1, func(string) error {
		mu.Lock()
		phase = 2
		mu.Unlock()
		return nil
	})
	close(ctx)
	wg.Wait()
	return sums[0] / time.Duration(max(counts[0], 1)), sums[1] / time.Duration(max(counts[1], 1)), res.PromptTokens
}

var errStopBench = errors.New("benchmark done")
