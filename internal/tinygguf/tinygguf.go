// Package tinygguf writes small random-weight GGUF models that real llama.cpp loads and runs:
// a llama-architecture LLM with a SentencePiece-style vocabulary and a ChatML chat template, a
// BERT embedding model with a WordPiece vocabulary, or the two models of OuteTTS text-to-speech
// (an LLM whose vocabulary holds audio codes, and a WavTokenizer decoder). Tests and benchmarks use them, since no
// weights can be downloaded where they run. The output is gibberish, but it goes through the real
// loading, tokenizing, decoding and sampling code.
package tinygguf

import (
	"fmt"
	"os"
	"slices"

	"github.com/ollama/ollama/fs/ggml"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// Options says what model to write.
type Options struct {
	// Arch is "llama" (the default: a chat LLM), "bert" (an embedding model, Pooling),
	// "outetts" (a llama LLM with OuteTTS's audio-code vocabulary: text-to-codes) or
	// "wavtokenizer" (a WavTokenizer decoder, "wavtokenizer-dec": codes-to-spectrum, the
	// vocoder of OuteTTS), or "qwen2vl" (the llama LLM as Qwen2-VL's, with M-RoPE positions;
	// WriteQwen2VL writes it with its vision projector).
	Arch string
	// Size is "tiny" (the default: vocabulary 512, n_embd 64, 2 layers, F32, a few hundred KB)
	// or "bench" (12 layers, F16 matrices, a few hundred MB: big enough that timings reflect
	// matrix work rather than call overhead), or for llama "wide" (n_embd 2048, 4 layers, F16,
	// ~400 MB: the width at which ggml's AMX kernels engage).
	Size string
	// Seed makes the weights deterministic: the same options give the same bytes.
	Seed int64
	// ChatTemplate is stored as tokenizer.chat_template. "" stores ChatMLTemplate for llama and
	// no template for bert.
	ChatTemplate string
	// ContextLength is the trained context length; 0 = the size's default (2048 tiny, 4096
	// bench for llama; 512 for bert, whose position table grows with it).
	ContextLength int
	// Pooling is a bert model's bert.pooling_type: "mean" (the default), "cls", "last", or
	// "rank" for a reranker with a classification head.
	Pooling string
	// Drop, when set, leaves out the tensors whose names it matches: a model llama.cpp's
	// loader accepts but that lacks what its graph needs, for tests of the checks and load
	// probes that stand between untrusted files and llama.cpp.
	Drop func(name string) bool
}

// shape is a model's dimensions.
type shape struct {
	vocab, embd, layers, heads, kvHeads, ff, ctx int
	// f16 stores the 2-D weight matrices as F16 instead of F32.
	f16 bool
}

func shapeFor(arch, size string) (shape, error) {
	switch arch + "/" + size {
	case "llama/tiny":
		return shape{vocab: 512, embd: 64, layers: 2, heads: 4, kvHeads: 2, ff: 128, ctx: 2048}, nil
	case "llama/bench":
		return shape{vocab: 512, embd: 1024, layers: 12, heads: 16, kvHeads: 4, ff: 2816, ctx: 4096, f16: true}, nil
	case "llama/wide":
		// A 3B-class width: ggml's AMX kernels engage only for rows of 2048 or more.
		return shape{vocab: 512, embd: 2048, layers: 4, heads: 16, kvHeads: 4, ff: 5632, ctx: 4096, f16: true}, nil
	case "bert/tiny":
		return shape{vocab: 512, embd: 64, layers: 2, heads: 4, kvHeads: 4, ff: 256, ctx: 512}, nil
	case "bert/bench":
		return shape{vocab: 512, embd: 768, layers: 12, heads: 12, kvHeads: 12, ff: 3072, ctx: 512, f16: true}, nil
	}
	return shape{}, fmt.Errorf("unknown size %q: want tiny or bench", size)
}

// Write writes the model that opts describe to path, atomically: the data goes to a temp file
// in the same directory, which is fsynced and then renamed over path, so readers see either the
// old file or the whole new one, and a failed write leaves nothing behind.
func Write(path string, opts Options) error {
	arch, size := opts.Arch, opts.Size
	if arch == "" {
		arch = "llama"
	}
	if size == "" {
		size = "tiny"
	}
	var kv ggml.KV
	var tensors []*ggml.Tensor
	name := "syn4pse-" + arch + "-" + size
	switch arch {
	case "llama", "bert", "outetts", "qwen2vl":
		shapeArch := arch
		if arch == "outetts" || arch == "qwen2vl" {
			shapeArch = "llama"
		}
		s, err := shapeFor(shapeArch, size)
		if err != nil {
			return err
		}
		if opts.ContextLength < 0 {
			return fmt.Errorf("context length %d: must not be negative", opts.ContextLength)
		}
		if opts.ContextLength > 0 {
			s.ctx = opts.ContextLength
		}
		switch arch {
		case "llama":
			kv, tensors = llamaModel(s, opts)
		case "bert":
			if p := opts.Pooling; p != "" && p != "mean" && p != "cls" && p != "last" && p != "rank" {
				return fmt.Errorf("pooling %q: want mean, cls, last or rank", p)
			}
			kv, tensors = bertModel(s, opts)
		case "outetts":
			kv, tensors = outettsModel(s, opts)
		case "qwen2vl":
			kv, tensors = qwen2vlModel(s, opts)
		}
		kv["general.file_type"] = uint32(fileType(s))
	case "wavtokenizer":
		s, err := wavTokenizerShapeFor(size)
		if err != nil {
			return err
		}
		kv, tensors = wavTokenizerModel(s, opts)
		kv["general.file_type"] = uint32(1) // the convolutions are F16
	default:
		return fmt.Errorf("unknown arch %q: want llama, bert, outetts, qwen2vl or wavtokenizer", opts.Arch)
	}
	if opts.Drop != nil {
		tensors = slices.DeleteFunc(tensors, func(t *ggml.Tensor) bool { return opts.Drop(t.Name) })
	}
	kv["general.name"] = name
	kv["general.parameter_count"] = parameterCount(tensors)
	// 0644: a model is not a secret.
	if err := durable.Write(path, 0o644, func(f *os.File) error { return ggml.WriteGGUF(f, kv, tensors) }); err != nil {
		return fmt.Errorf("write %s model to %s: %w", name, path, err)
	}
	return nil
}

// fileType is the GGUF general.file_type: ALL_F32 (0) or MOSTLY_F16 (1).
func fileType(s shape) int {
	if s.f16 {
		return 1
	}
	return 0
}

// parameterCount is the number of weights in the tensors.
func parameterCount(tensors []*ggml.Tensor) uint64 {
	var n uint64
	for _, t := range tensors {
		n += t.Elements()
	}
	return n
}
