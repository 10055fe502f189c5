package tinygguf

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

func TestOuteTTSVocab(t *testing.T) {
	tokens, _, types := outettsVocab(512)
	if len(tokens) != 512+len(outettsMarkers)+outettsTimes+OuteTTSCodes {
		t.Fatalf("vocabulary of %d tokens", len(tokens))
	}
	for _, want := range []string{"<|im_start|>", "<|audio_end|>", "<|text_sep|>", "<|t_0.08|>", "<|0|>", fmt.Sprintf("<|%d|>", OuteTTSCodes-1)} {
		i := slices.Index(tokens, want)
		if i < 0 {
			t.Fatalf("no token %q", want)
		}
		if types[i] != tokenControl && types[i] != tokenUserDefined {
			t.Errorf("%q has type %d: want control or user-defined", want, types[i])
		}
	}
}

func TestWriteOuteTTSPair(t *testing.T) {
	dir := t.TempDir()
	for _, arch := range []string{"outetts", "wavtokenizer"} {
		path := filepath.Join(dir, arch+".gguf")
		if err := Write(path, Options{Arch: arch, Seed: 1}); err != nil {
			t.Fatal(err)
		}
		g := decode(t, path)
		kv := g.KV()
		switch arch {
		case "outetts":
			if kv.Architecture() != "llama" || len(kv.Strings("tokenizer.ggml.tokens")) != 512+len(outettsMarkers)+outettsTimes+OuteTTSCodes {
				t.Errorf("outetts: arch %q, %d tokens", kv.Architecture(), len(kv.Strings("tokenizer.ggml.tokens")))
			}
		case "wavtokenizer":
			if kv.Architecture() != "wavtokenizer-dec" || kv.Uint("vocab_size") != OuteTTSCodes || kv.EmbeddingLength() != 1282 {
				t.Errorf("wavtokenizer: arch %q, vocab %d, n_embd %d", kv.Architecture(), kv.Uint("vocab_size"), kv.EmbeddingLength())
			}
			for _, tt := range g.Tensors().Items() {
				if len(tt.Shape) == 3 && tt.Kind != typeF16 {
					t.Errorf("%s: kind %d, want F16 (convolution kernel)", tt.Name, tt.Kind)
				}
			}
		}
	}
}
