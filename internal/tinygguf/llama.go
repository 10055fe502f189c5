package tinygguf

import (
	"fmt"

	"github.com/ollama/ollama/fs/ggml"
)

// SentencePiece token types, as tokenizer.ggml.token_type stores them.
const (
	tokenNormal  = 1
	tokenUnknown = 2
	tokenControl = 3
	tokenByte    = 6
)

// Token ids of the llama vocabulary.
const (
	UnkToken     = 0
	BOSToken     = 1
	EOSToken     = 2
	ImStartToken = 259
	ImEndToken   = 260
)

// llamaVocabSize is the vocabulary size of the llama models.
const llamaVocabSize = 512

// llamaVocab is a SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte tokens, the
// ChatML control tokens, then English pieces ("▁" marks a word start), most useful first.
func llamaVocab() (tokens []string, scores []float32, types []int32) {
	add := func(tok string, typ int32) {
		tokens = append(tokens, tok)
		scores = append(scores, -float32(len(tokens)))
		types = append(types, typ)
	}
	add("<unk>", tokenUnknown)
	add("<s>", tokenControl)
	add("</s>", tokenControl)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), tokenByte)
	}
	add("<|im_start|>", tokenControl)
	add("<|im_end|>", tokenControl)

	seen := map[string]bool{}
	piece := func(p string) {
		if !seen[p] && len(tokens) < llamaVocabSize {
			seen[p] = true
			add(p, tokenNormal)
		}
	}
	piece("▁")
	for c := 'a'; c <= 'z'; c++ {
		piece(string(c))
	}
	for c := 'a'; c <= 'z'; c++ {
		piece("▁" + string(c))
	}
	for _, p := range []string{".", ",", "!", "?", "'", "\"", "-", ":", ";", "(", ")", "\n", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"} {
		piece(p)
	}
	for c := 'A'; c <= 'Z'; c++ {
		piece(string(c))
		piece("▁" + string(c))
	}
	// Whole words come with their prefixes, so SentencePiece's merges can reach them.
	words := []string{"the", "of", "and", "to", "in", "is", "it", "you", "that", "he", "was", "for",
		"on", "are", "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one",
		"had", "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can",
		"said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will",
		"up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her",
		"would", "make", "like", "him", "into", "time", "has", "look", "two", "more", "write",
		"go", "see", "number", "no", "way", "could", "people", "my", "than", "first", "water",
		"been", "call", "who", "oil", "its", "now", "find", "long", "down", "day", "did", "get",
		"come", "made", "may", "part", "hello", "world", "story", "once", "upon", "cat", "sat",
		"mat", "dog", "fox", "quick", "brown", "lazy", "sky", "blue", "red", "green", "yes"}
	for _, w := range words {
		for i := 2; i <= len(w); i++ {
			piece("▁" + w[:i])
		}
	}
	for _, w := range words {
		for i := 2; i <= len(w); i++ {
			piece(w[:i])
		}
	}
	for a := 'a'; len(tokens) < llamaVocabSize; a++ {
		for b := 'a'; b <= 'z' && len(tokens) < llamaVocabSize; b++ {
			piece(string(a) + string(b))
		}
	}
	return tokens, scores, types
}

func llamaModel(s shape, opts Options) (ggml.KV, []*ggml.Tensor) {
	tokens, scores, types := llamaVocab()
	template := opts.ChatTemplate
	if template == "" {
		template = ChatMLTemplate
	}
	fileType := uint32(0) // ALL_F32
	if s.f16 {
		fileType = 1 // MOSTLY_F16
	}
	headDim := s.embd / s.heads
	kv := ggml.KV{
		"general.architecture":                   "llama",
		"general.name":                           "syn4pse-tiny-llama-" + sizeName(opts.Size),
		"general.file_type":                      fileType,
		"llama.vocab_size":                       uint32(len(tokens)),
		"llama.context_length":                   uint32(s.ctx),
		"llama.embedding_length":                 uint32(s.embd),
		"llama.block_count":                      uint32(s.layers),
		"llama.feed_forward_length":              uint32(s.ff),
		"llama.attention.head_count":             uint32(s.heads),
		"llama.attention.head_count_kv":          uint32(s.kvHeads),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.rope.dimension_count":             uint32(headDim),
		"llama.rope.freq_base":                   float32(10000),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.tokens":                  tokens,
		"tokenizer.ggml.scores":                  scores,
		"tokenizer.ggml.token_type":              types,
		"tokenizer.ggml.bos_token_id":            uint32(BOSToken),
		"tokenizer.ggml.eos_token_id":            uint32(ImEndToken),
		"tokenizer.ggml.unknown_token_id":        uint32(UnkToken),
		"tokenizer.ggml.padding_token_id":        uint32(EOSToken),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.ggml.add_eos_token":           false,
		"tokenizer.chat_template":                template,
	}
	ts := &tensorSet{seed: opts.Seed, f16: s.f16}
	kvDim := headDim * s.kvHeads
	ts.add("token_embd.weight", 0.02, s.embd, len(tokens))
	ts.add("output_norm.weight", 0, s.embd)
	for i := range s.layers {
		blk := fmt.Sprintf("blk.%d.", i)
		ts.add(blk+"attn_norm.weight", 0, s.embd)
		ts.add(blk+"attn_q.weight", 0.02, s.embd, s.embd)
		ts.add(blk+"attn_k.weight", 0.02, s.embd, kvDim)
		ts.add(blk+"attn_v.weight", 0.02, s.embd, kvDim)
		ts.add(blk+"attn_output.weight", 0.02, s.embd, s.embd)
		ts.add(blk+"ffn_norm.weight", 0, s.embd)
		ts.add(blk+"ffn_gate.weight", 0.02, s.embd, s.ff)
		ts.add(blk+"ffn_up.weight", 0.02, s.embd, s.ff)
		ts.add(blk+"ffn_down.weight", 0.02, s.ff, s.embd)
	}
	return kv, ts.tensors
}

func sizeName(size string) string {
	if size == "" {
		return "tiny"
	}
	return size
}
