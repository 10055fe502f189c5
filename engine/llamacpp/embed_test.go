package llamacpp_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// loadEmbedder writes a generated model of arch and size and loads it as an embeddings model.
func loadEmbedder(tb testing.TB, arch, size string, opts engine.LoadOptions) engine.Embedder {
	tb.Helper()
	opts.Path = filepath.Join(tb.TempDir(), arch+".gguf")
	if err := tinygguf.Write(opts.Path, tinygguf.Options{Arch: arch, Size: size, Seed: 3}); err != nil {
		tb.Fatal(err)
	}
	e, err := llamacpp.New().LoadEmbedder(tb.Context(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

func texts(ss ...string) []engine.EmbedInput {
	in := make([]engine.EmbedInput, len(ss))
	for i, s := range ss {
		in[i].Text = s
	}
	return in
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// TestEmbedPackedEqualsOneByOne checks that inputs packed into one decode, each its own
// sequence, get the vectors they get alone, for an encoder (bert, mean pooling from its GGUF)
// and a decoder (llama, which names no pooling), and for each configured pooling.
func TestEmbedPackedEqualsOneByOne(t *testing.T) {
	inputs := texts("the cat sat on the mat", "hello", "a much longer sentence about the weather in the mountains today", "cat", "the the the")
	for _, tc := range []struct{ arch, pooling, want string }{
		{"bert", "", "mean"}, {"bert", "cls", "cls"}, {"bert", "last", "last"}, {"llama", "", "mean"}, {"llama", "last", "last"},
	} {
		t.Run(tc.arch+"/"+tc.want, func(t *testing.T) {
			e := loadEmbedder(t, tc.arch, "tiny", engine.LoadOptions{Threads: 2, Pooling: tc.pooling})
			info := e.Info()
			if info.Pooling != tc.want || info.EmbeddingLength != 64 {
				t.Fatalf("info: pooling %q length %d, want %q 64", info.Pooling, info.EmbeddingLength, tc.want)
			}
			packed, err := e.Embed(t.Context(), engine.EmbedRequest{Inputs: inputs})
			if err != nil {
				t.Fatal(err)
			}
			if len(packed.Embeddings) != len(inputs) || packed.PromptTokens == 0 {
				t.Fatalf("%d vectors, %d tokens", len(packed.Embeddings), packed.PromptTokens)
			}
			for i, in := range inputs {
				alone, err := e.Embed(t.Context(), engine.EmbedRequest{Inputs: []engine.EmbedInput{in}})
				if err != nil {
					t.Fatal(err)
				}
				if d := maxDiff(packed.Embeddings[i], alone.Embeddings[0]); d > 1e-4 || len(alone.Embeddings[0]) != 64 {
					t.Errorf("input %d: packed and alone differ by %g", i, d)
				}
			}
			if maxDiff(packed.Embeddings[0], packed.Embeddings[1]) < 1e-3 {
				t.Error("different inputs got the same vector")
			}
		})
	}
}

// TestEmbedPoolingFromGGUF: the GGUF's pooling is used unless the model's options set one.
func TestEmbedPoolingFromGGUF(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cls.gguf")
	if err := tinygguf.Write(path, tinygguf.Options{Arch: "bert", Seed: 3, Pooling: "cls"}); err != nil {
		t.Fatal(err)
	}
	for configured, want := range map[string]string{"": "cls", "mean": "mean"} {
		e, err := llamacpp.New().LoadEmbedder(t.Context(), engine.LoadOptions{Path: path, Threads: 2, Pooling: configured})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Info().Pooling; got != want {
			t.Errorf("configured %q: pooling %q, want %q", configured, got, want)
		}
		e.Close()
	}
}

func TestEmbedNormalizeTokensAndLimits(t *testing.T) {
	e := loadEmbedder(t, "bert", "tiny", engine.LoadOptions{Threads: 2, ContextLength: 32})
	res, err := e.Embed(t.Context(), engine.EmbedRequest{Inputs: texts("the cat", "sat on the mat"), Normalize: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Embeddings {
		if n := norm(v); math.Abs(n-1) > 1e-5 {
			t.Errorf("vector %d has norm %g", i, n)
		}
	}
	// The same text as token ids gives the same vector.
	toks := []int32{tinygguf.BertCLSToken, 10, 11, 12, tinygguf.BertSEPToken}
	byIDs, err := e.Embed(t.Context(), engine.EmbedRequest{Inputs: []engine.EmbedInput{{Tokens: toks}, {Tokens: toks}}})
	if err != nil || byIDs.PromptTokens != 10 || maxDiff(byIDs.Embeddings[0], byIDs.Embeddings[1]) > 1e-5 {
		t.Fatalf("token inputs: %v, %d tokens", err, byIDs.PromptTokens)
	}

	long := strings.Repeat("cat ", 40)
	_, err = e.Embed(t.Context(), engine.EmbedRequest{Inputs: texts("short", long)})
	var tooLong *engine.InputTooLongError
	if !errors.As(err, &tooLong) || !errors.Is(err, engine.ErrInvalidRequest) || tooLong.Index != 1 || tooLong.Limit != 32 ||
		!strings.Contains(err.Error(), "input 1") || !strings.Contains(err.Error(), "32") {
		t.Fatalf("too long input: %v", err)
	}
	trunc, err := e.Embed(t.Context(), engine.EmbedRequest{Inputs: texts("short", long), Truncate: true})
	if err != nil || len(trunc.Embeddings) != 2 {
		t.Fatalf("truncated: %v", err)
	}
	for _, bad := range []engine.EmbedRequest{
		{},
		{Inputs: []engine.EmbedInput{{Tokens: []int32{1, 99999}}}},
		{Inputs: []engine.EmbedInput{{Tokens: []int32{}}}},
	} {
		if _, err := e.Embed(t.Context(), bad); !errors.Is(err, engine.ErrInvalidRequest) {
			t.Errorf("%+v: %v, want ErrInvalidRequest", bad, err)
		}
	}
	// A cancelled request stops, and leaves the model serving.
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.Embed(cancelled, engine.EmbedRequest{Inputs: texts("cat")}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := e.Embed(t.Context(), engine.EmbedRequest{Inputs: texts("cat")}); err != nil {
		t.Errorf("after a cancelled request: %v", err)
	}
	if _, err := llamacpp.New().LoadEmbedder(t.Context(), engine.LoadOptions{Path: "x", Pooling: "max"}); err == nil {
		t.Error("pooling max loaded")
	}
}

// BenchmarkEmbed measures embeddings per second for 256 short inputs, packed into as few
// decodes as fit the batch against one decode per input, on the same model in the same run.
// BENCH_SIZE=tiny for the tiny bert; the default is bert "bench" (12 layers, n_embd 768).
func BenchmarkEmbed(b *testing.B) {
	size := "bench"
	if testing.Short() {
		size = "tiny"
	}
	e := loadEmbedder(b, "bert", size, engine.LoadOptions{})
	inputs := make([]engine.EmbedInput, 256)
	for i := range inputs {
		inputs[i].Text = fmt.Sprintf("sentence %d about the cat on the mat", i)
	}
	var rates [2]float64
	for k, mode := range []string{"packed", "one-by-one"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				if mode == "packed" {
					if _, err := e.Embed(b.Context(), engine.EmbedRequest{Inputs: inputs}); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for _, in := range inputs {
					if _, err := e.Embed(b.Context(), engine.EmbedRequest{Inputs: []engine.EmbedInput{in}}); err != nil {
						b.Fatal(err)
					}
				}
			}
			rates[k] = float64(len(inputs)*b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rates[k], "embeddings/s")
		})
	}
	if rates[1] > 0 {
		b.Logf("packed %.0f embeddings/s, one-by-one %.0f embeddings/s: %.2fx", rates[0], rates[1], rates[0]/rates[1])
	}
}
