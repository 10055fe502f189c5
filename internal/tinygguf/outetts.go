package tinygguf

import (
	"fmt"

	"github.com/ollama/ollama/fs/ggml"
)

// OuteTTS special tokens, as OuteTTS 0.2's vocabulary spells them (0.3 adds <|space|>).
var outettsMarkers = []string{
	"<|text_start|>", "<|text_end|>", "<|audio_start|>", "<|audio_end|>",
	"<|text_sep|>", "<|space|>", "<|code_start|>", "<|code_end|>",
}

// OuteTTSCodes is the number of audio code tokens <|0|>…<|N-1|> of the tiny OuteTTS model, and
// the vocabulary size of the tiny WavTokenizer decoder: every code the LLM can say, the vocoder
// can play.
const OuteTTSCodes = 512

// outettsTimes is how many duration tokens <|t_0.00|>, <|t_0.01|>… the tiny vocabulary holds
// (OuteTTS marks each word of a speaker profile with its length).
const outettsTimes = 100

// outettsVocab is the text vocabulary of the llama model, then the OuteTTS markers (control
// tokens, so text cannot forge them), the duration tokens and the audio codes. Codes and
// durations are user-defined tokens, matched whole in text as OuteTTS's added tokens are; the
// engine finds them by their text, never by id.
func outettsVocab(textSize int) (tokens []string, scores []float32, types []int32) {
	v := newVocabBuilder(textSize + len(outettsMarkers) + outettsTimes + OuteTTSCodes)
	text, textScores, textTypes := llamaVocab(textSize)
	for i, t := range text {
		v.add(t, textTypes[i])
		v.scores[len(v.scores)-1] = textScores[i]
	}
	for _, m := range outettsMarkers {
		v.add(m, tokenControl)
	}
	for i := range outettsTimes {
		v.add(fmt.Sprintf("<|t_%d.%02d|>", i/100, i%100), tokenUserDefined)
	}
	for i := range OuteTTSCodes {
		v.add(fmt.Sprintf("<|%d|>", i), tokenUserDefined)
	}
	return v.tokens, v.scores, v.types
}

// outettsModel is an OuteTTS-style text-to-codes LLM: the llama model of the same shape with
// the OuteTTS vocabulary, whose BOS is <|im_start|> as in OuteTTS's Qwen-based GGUFs.
func outettsModel(s shape, opts Options) (ggml.KV, []*ggml.Tensor) {
	tokens, scores, types := outettsVocab(s.vocab)
	kv, tensors := llamaModelVocab(s, opts, tokens, scores, types)
	kv["tokenizer.ggml.bos_token_id"] = uint32(ImStartToken)
	kv["tokenizer.ggml.add_bos_token"] = false
	return kv, tensors
}

// wavTokenizerShape is the WavTokenizer decoder's dimensions. Its output (n_embd) is the
// spectrum of one 1280-sample STFT frame: 641 log-magnitudes then 641 phases, as in the real
// 24 kHz model, so the engine's spectrum-to-wave step runs at its real size.
type wavTokenizerShape struct {
	vocab, features, embd, ff, layers, out, ctx int
}

func wavTokenizerShapeFor(size string) (wavTokenizerShape, error) {
	switch size {
	case "tiny":
		return wavTokenizerShape{vocab: OuteTTSCodes, features: 32, embd: 64, ff: 128, layers: 6, out: 1282, ctx: 8192}, nil
	case "bench":
		// The real model's dimensions (WavTokenizer-large-speech-75token).
		return wavTokenizerShape{vocab: 4096, features: 512, embd: 768, ff: 2304, layers: 12, out: 1282, ctx: 8192}, nil
	}
	return wavTokenizerShape{}, fmt.Errorf("unknown size %q: want tiny or bench", size)
}

// posnetLayers is fixed by the architecture: resnet, resnet, attention, resnet, resnet, norm.
const posnetLayers = 6

// wavTokenizerModel is a WavTokenizer decoder ("wavtokenizer-dec", llama-model.cpp): code
// embeddings, a 1-D convolution, the PosNet (resnet blocks with group norms and one attention
// block), ConvNeXt blocks, then a projection to one spectrum frame per code. Its convolution
// kernels are F16, as ggml's im2col path needs; everything else is F32.
func wavTokenizerModel(s wavTokenizerShape, opts Options) (ggml.KV, []*ggml.Tensor) {
	const arch = "wavtokenizer-dec"
	kv := ggml.KV{
		"general.architecture":                 arch,
		arch + ".vocab_size":                   uint32(s.vocab),
		arch + ".context_length":               uint32(s.ctx),
		arch + ".embedding_length":             uint32(s.out),
		arch + ".block_count":                  uint32(max(s.layers, posnetLayers)),
		arch + ".feed_forward_length":          uint32(s.ff),
		arch + ".features_length":              uint32(s.features),
		arch + ".posnet.embedding_length":      uint32(s.embd),
		arch + ".posnet.block_count":           uint32(posnetLayers),
		arch + ".convnext.embedding_length":    uint32(s.embd),
		arch + ".convnext.block_count":         uint32(s.layers),
		arch + ".attention.causal":             false,
		arch + ".attention.layer_norm_epsilon": float32(1e-6),
		arch + ".attention.group_norm_epsilon": float32(1e-6),
		arch + ".attention.group_norm_groups":  uint32(32),
		"tokenizer.ggml.model":                 "none",
	}
	ts := &tensorSet{seed: opts.Seed}
	ts.addF32("token_embd.weight", random, s.features, s.vocab)
	ts.addF16("conv1d.weight", random, 7, s.features, s.embd)
	ts.addF32("conv1d.bias", zeros, 1, s.embd)
	for i := range posnetLayers {
		p := fmt.Sprintf("posnet.%d.", i)
		switch i {
		case 2:
			ts.addF32(p+"attn_norm.weight", ones, 1, s.embd)
			ts.addF32(p+"attn_norm.bias", zeros, 1, s.embd)
			for _, proj := range []string{"attn_q", "attn_k", "attn_v", "attn_output"} {
				ts.addF16(p+proj+".weight", random, 1, s.embd, s.embd)
				ts.addF32(p+proj+".bias", zeros, 1, s.embd)
			}
		case 5:
			ts.addF32(p+"attn_norm.weight", ones, 1, s.embd)
			ts.addF32(p+"attn_norm.bias", zeros, 1, s.embd)
		default:
			for _, n := range []string{"1", "2"} {
				ts.addF32(p+"norm"+n+".weight", ones, 1, s.embd)
				ts.addF32(p+"norm"+n+".bias", zeros, 1, s.embd)
				ts.addF16(p+"conv"+n+".weight", random, 3, s.embd, s.embd)
				ts.addF32(p+"conv"+n+".bias", zeros, 1, s.embd)
			}
		}
	}
	ts.addF32("token_embd_norm.weight", ones, s.embd)
	ts.addF32("token_embd_norm.bias", zeros, s.embd)
	for i := range s.layers {
		c := fmt.Sprintf("convnext.%d.", i)
		ts.addF16(c+"dw.weight", random, 7, 1, s.embd)
		ts.addF32(c+"dw.bias", zeros, 1, s.embd)
		ts.addF32(c+"norm.weight", ones, s.embd)
		ts.addF32(c+"norm.bias", zeros, s.embd)
		ts.addF32(c+"pw1.weight", random, s.embd, s.ff)
		ts.addF32(c+"pw1.bias", zeros, s.ff)
		ts.addF32(c+"pw2.weight", random, s.ff, s.embd)
		ts.addF32(c+"pw2.bias", zeros, s.embd)
		ts.addF32(c+"gamma.weight", ones, s.embd)
	}
	ts.addF32("output_norm.weight", ones, s.embd)
	ts.addF32("output_norm.bias", zeros, s.embd)
	ts.addF32("output.weight", random, s.embd, s.out)
	ts.addF32("output.bias", zeros, s.out)
	return kv, ts.tensors
}
