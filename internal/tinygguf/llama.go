package tinygguf

import (
	"fmt"

	"github.com/ollama/ollama/fs/ggml"
)

// ChatMLTemplate is the default chat template: "<|im_start|>role\ncontent<|im_end|>\n" per
// message, then "<|im_start|>assistant\n" when add_generation_prompt is set. llama.cpp's
// built-in template detection also recognises it as chatml.
const ChatMLTemplate = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// Token ids of the llama vocabulary. EOS is <|im_end|>, so generation ends with the turn;
// </s> pads.
const (
	UnkToken     = 0
	BOSToken     = 1
	PadToken     = 2 // "</s>"
	ImStartToken = 259
	ImEndToken   = 260
	EOSToken     = ImEndToken
)

// SentencePiece token types, as tokenizer.ggml.token_type stores them.
const (
	tokenNormal      = 1
	tokenUnknown     = 2
	tokenControl     = 3
	tokenUserDefined = 4
	tokenByte        = 6
)

// llamaSubwords are frequent English word pieces, most frequent first.
var llamaSubwords = []string{
	"th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "es", "or", "ed", "is", "it",
	"al", "ar", "st", "ng", "ou", "le", "ing", "ion", "tion", "ent", "ly",
}

// llamaWords are common English words, most frequent first; each becomes a "▁word" piece. A
// 512-token vocabulary holds the first few dozen.
var llamaWords = []string{
	"the", "of", "and", "to", "in", "is", "it", "you", "that", "hello", "world", "The", "Hello",
	"was", "for",
	"on", "are", "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one",
	"had", "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can",
	"said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will",
	"up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her",
	"would", "make", "like", "him", "into", "time", "has", "look", "two", "more", "write",
	"go", "see", "number", "no", "way", "could", "people", "my", "than", "first", "water",
}

// vocabBuilder appends tokens with descending scores: SentencePiece merges the adjacent pair
// whose union has the highest score, so earlier pieces win.
type vocabBuilder struct {
	size   int
	tokens []string
	scores []float32
	types  []int32
	index  map[string]int
}

func newVocabBuilder(size int) *vocabBuilder {
	return &vocabBuilder{size: size, index: map[string]int{}}
}

func (v *vocabBuilder) full() bool { return len(v.tokens) >= v.size }

// add appends a token unless the vocabulary is full or holds it already.
func (v *vocabBuilder) add(token string, typ int32) {
	if _, ok := v.index[token]; ok || v.full() {
		return
	}
	v.index[token] = len(v.tokens)
	v.tokens = append(v.tokens, token)
	v.scores = append(v.scores, -float32(len(v.tokens)))
	v.types = append(v.types, typ)
}

// piece appends a normal piece after all its prefixes, so that SentencePiece, which builds a
// piece by merging two pieces it already has, can reach it from single characters.
func (v *vocabBuilder) piece(p string) {
	runes := []rune(p)
	for i := 1; i <= len(runes); i++ {
		v.add(string(runes[:i]), tokenNormal)
	}
}

// llamaVocab is a SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte tokens (so any
// text encodes), the ChatML control tokens and the given extra ones, then English pieces ("▁"
// marks a word start), most useful first.
func llamaVocab(size int, controls ...string) (tokens []string, scores []float32, types []int32) {
	v := newVocabBuilder(size)
	v.add("<unk>", tokenUnknown)
	v.add("<s>", tokenControl)
	v.add("</s>", tokenControl)
	for b := range 256 {
		v.add(fmt.Sprintf("<0x%02X>", b), tokenByte)
	}
	v.add("<|im_start|>", tokenControl)
	v.add("<|im_end|>", tokenControl)
	for _, c := range controls {
		v.add(c, tokenControl)
	}

	// Letters, digits and common punctuation are pieces; other characters (newline included,
	// as in Llama 2's vocabulary) fall back to byte tokens.
	v.piece("▁")
	for c := 'a'; c <= 'z'; c++ {
		v.piece(string(c))
		v.piece("▁" + string(c))
	}
	for _, c := range ".,!?'\"-:;()0123456789" {
		v.piece(string(c))
	}
	for c := 'A'; c <= 'Z'; c++ {
		v.piece("▁" + string(c))
	}
	for _, p := range llamaSubwords {
		v.piece(p)
	}
	for _, w := range llamaWords {
		v.piece("▁" + w)
	}
	for a := 'a'; a <= 'z' && !v.full(); a++ {
		for b := 'a'; b <= 'z' && !v.full(); b++ {
			v.piece(string(a) + string(b))
		}
	}
	return v.tokens, v.scores, v.types
}

// llamaModel is a llama-architecture LLM: RMS norms, rotary positions, grouped-query attention
// and a SwiGLU feed-forward, with the output projection tied to the token embedding.
func llamaModel(s shape, opts Options) (ggml.KV, []*ggml.Tensor) {
	tokens, scores, types := llamaVocab(s.vocab)
	return llamaModelVocab(s, opts, tokens, scores, types)
}

// llamaModelVocab is llamaModel with the given vocabulary.
func llamaModelVocab(s shape, opts Options, tokens []string, scores []float32, types []int32) (ggml.KV, []*ggml.Tensor) {
	template := opts.ChatTemplate
	if template == "" {
		template = ChatMLTemplate
	}
	headDim := s.embd / s.heads
	kv := ggml.KV{
		"general.architecture":                   "llama",
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
		"tokenizer.ggml.eos_token_id":            uint32(EOSToken),
		"tokenizer.ggml.unknown_token_id":        uint32(UnkToken),
		"tokenizer.ggml.padding_token_id":        uint32(PadToken),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.ggml.add_eos_token":           false,
		"tokenizer.chat_template":                template,
	}
	ts := &tensorSet{seed: opts.Seed, f16: s.f16}
	kvDim := headDim * s.kvHeads
	ts.add("token_embd.weight", random, s.embd, len(tokens))
	ts.add("output_norm.weight", ones, s.embd)
	for i := range s.layers {
		blk := fmt.Sprintf("blk.%d.", i)
		ts.add(blk+"attn_norm.weight", ones, s.embd)
		ts.add(blk+"attn_q.weight", random, s.embd, s.embd)
		ts.add(blk+"attn_k.weight", random, s.embd, kvDim)
		ts.add(blk+"attn_v.weight", random, s.embd, kvDim)
		ts.add(blk+"attn_output.weight", random, s.embd, s.embd)
		ts.add(blk+"ffn_norm.weight", ones, s.embd)
		ts.add(blk+"ffn_gate.weight", random, s.embd, s.ff)
		ts.add(blk+"ffn_up.weight", random, s.embd, s.ff)
		ts.add(blk+"ffn_down.weight", random, s.ff, s.embd)
	}
	return kv, ts.tensors
}
