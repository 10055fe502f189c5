package tinygguf

import (
	"fmt"
	"strings"

	"github.com/ollama/ollama/fs/ggml"
)

// Token ids of the BERT vocabulary. llama.cpp uses the BOS token as [CLS].
const (
	BertPadToken  = 0
	BertUnkToken  = 1
	BertCLSToken  = 2
	BertSEPToken  = 3
	BertMaskToken = 4
)

// bertContinuations are frequent WordPiece suffixes ("##ing" in BERT's vocab.txt).
var bertContinuations = []string{
	"s", "ed", "ing", "er", "ly", "es", "en", "al", "ic", "ion", "tion", "ment", "ness", "able",
	"ers", "est", "ous", "ful", "less", "ity", "ive", "ize", "ist", "ism", "ance", "ence", "ship",
}

// bertVocab is a WordPiece vocabulary as llama.cpp's converter stores one: a word-start piece
// "the" becomes "▁the", a continuation "##ing" becomes "ing", and [PAD], [UNK], [CLS], [SEP],
// [MASK] come first. llama.cpp lowercases the text, splits punctuation off as one-character
// words, then takes the longest matching piece: single letters and digits, in both forms, make
// every ASCII word encodable.
func bertVocab(size int) (tokens []string, types []int32) {
	v := newVocabBuilder(size)
	v.add("[PAD]", tokenControl)
	v.add("[UNK]", tokenUnknown)
	v.add("[CLS]", tokenControl)
	v.add("[SEP]", tokenControl)
	v.add("[MASK]", tokenControl)
	for c := byte('!'); c <= '~'; c++ {
		if c >= 'A' && c <= 'Z' {
			continue // lowercased before lookup
		}
		v.add("▁"+string(c), tokenNormal)
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			v.add(string(c), tokenNormal)
		}
	}
	for _, w := range llamaWords {
		if strings.ToLower(w) == w {
			v.add("▁"+w, tokenNormal)
		}
	}
	for _, s := range bertContinuations {
		v.add(s, tokenNormal)
	}
	for _, s := range llamaSubwords {
		v.add(s, tokenNormal)
	}
	for a := 'a'; a <= 'z' && !v.full(); a++ {
		for b := 'a'; b <= 'z' && !v.full(); b++ {
			v.add("▁"+string(a)+string(b), tokenNormal)
		}
	}
	return v.tokens, v.types
}

// bertPooling is llama.cpp's pooling type number of a pooling name: mean 1, cls 2, last 3,
// rank 4 (a reranker: the [CLS] vector through a classification head to one score).
func bertPooling(name string) uint32 {
	switch name {
	case "cls":
		return 2
	case "last":
		return 3
	case "rank":
		return 4
	}
	return 1
}

// bertModel is a BERT encoder (post-norm, learned positions, GELU feed-forward) whose token
// vectors llama.cpp mean-pools into one embedding per sequence.
func bertModel(s shape, opts Options) (ggml.KV, []*ggml.Tensor) {
	tokens, types := bertVocab(s.vocab)
	const tokenTypeCount = 2 // sentence A and B
	kv := ggml.KV{
		"general.architecture":              "bert",
		"bert.context_length":               uint32(s.ctx),
		"bert.embedding_length":             uint32(s.embd),
		"bert.block_count":                  uint32(s.layers),
		"bert.feed_forward_length":          uint32(s.ff),
		"bert.attention.head_count":         uint32(s.heads),
		"bert.attention.layer_norm_epsilon": float32(1e-12),
		"bert.attention.causal":             false,
		"bert.pooling_type":                 bertPooling(opts.Pooling),
		"tokenizer.ggml.model":              "bert",
		"tokenizer.ggml.tokens":             tokens,
		"tokenizer.ggml.token_type":         types,
		"tokenizer.ggml.token_type_count":   uint32(tokenTypeCount),
		"tokenizer.ggml.bos_token_id":       uint32(BertCLSToken),
		"tokenizer.ggml.cls_token_id":       uint32(BertCLSToken),
		"tokenizer.ggml.seperator_token_id": uint32(BertSEPToken),
		"tokenizer.ggml.unknown_token_id":   uint32(BertUnkToken),
		"tokenizer.ggml.padding_token_id":   uint32(BertPadToken),
		"tokenizer.ggml.mask_token_id":      uint32(BertMaskToken),
		"tokenizer.ggml.add_bos_token":      true,
		"tokenizer.ggml.add_sep_token":      true,
	}
	if opts.ChatTemplate != "" {
		kv["tokenizer.chat_template"] = opts.ChatTemplate
	}
	ts := &tensorSet{seed: opts.Seed, f16: s.f16}
	ts.add("token_embd.weight", random, s.embd, len(tokens))
	ts.addF32("token_types.weight", random, s.embd, tokenTypeCount)
	ts.addF32("position_embd.weight", random, s.embd, s.ctx)
	ts.add("token_embd_norm.weight", ones, s.embd)
	ts.add("token_embd_norm.bias", zeros, s.embd)
	for i := range s.layers {
		blk := fmt.Sprintf("blk.%d.", i)
		for _, proj := range []string{"attn_q", "attn_k", "attn_v", "attn_output"} {
			ts.add(blk+proj+".weight", random, s.embd, s.embd)
			ts.add(blk+proj+".bias", zeros, s.embd)
		}
		ts.add(blk+"attn_output_norm.weight", ones, s.embd)
		ts.add(blk+"attn_output_norm.bias", zeros, s.embd)
		ts.add(blk+"ffn_up.weight", random, s.embd, s.ff)
		ts.add(blk+"ffn_up.bias", zeros, s.ff)
		ts.add(blk+"ffn_down.weight", random, s.ff, s.embd)
		ts.add(blk+"ffn_down.bias", zeros, s.embd)
		ts.add(blk+"layer_output_norm.weight", ones, s.embd)
		ts.add(blk+"layer_output_norm.bias", zeros, s.embd)
	}
	if opts.Pooling == "rank" {
		// RoBERTa's classification head: dense + tanh, then one output (the relevance).
		ts.add("cls.weight", random, s.embd, s.embd)
		ts.add("cls.bias", zeros, s.embd)
		ts.add("cls.output.weight", random, s.embd, 1)
		ts.add("cls.output.bias", zeros, 1)
	}
	return kv, ts.tensors
}
