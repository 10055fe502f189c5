package llamacpp

/*
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Encode runs a model without a KV cache (an encoder: BERT, WavTokenizer's decoder) over the
// whole batch at once; the batch must fit one micro-batch. With Embeddings set on the context,
// the output vectors are then available to Embeddings.
func (c *Context) Encode(b *Batch) error {
	switch code := int(C.llama_encode(c.c, b.c)); code {
	case 0:
		return nil
	case 2:
		return ErrAborted
	default:
		return fmt.Errorf("llama_encode failed with code %d", code)
	}
}

// Embeddings appends to dst the output vector (EmbeddingLength floats) of output idx of the last
// Decode or Encode: its index in the batch, or negative to count from the last output. The
// context must have been created with Embeddings. It returns dst unchanged when idx has no
// output. The values are copied: llama.cpp reuses its buffer on the next call.
func (c *Context) Embeddings(dst []float32, idx int) []float32 {
	p := C.llama_get_embeddings_ith(c.c, C.int32_t(idx))
	if p == nil {
		return dst
	}
	n := int(C.llama_model_n_embd(c.model.c))
	return append(dst, unsafe.Slice((*float32)(unsafe.Pointer(p)), n)...)
}

// Pooling is how token vectors become one vector per sequence.
type Pooling int

// Pooling values. The zero value leaves the choice to the model's GGUF (bert.pooling_type...).
const (
	PoolingUnspecified Pooling = iota
	PoolingNone
	PoolingMean
	PoolingCLS
	PoolingLast
	PoolingRank
)

// c is the llama_pooling_type value.
func (p Pooling) c() int {
	if p == PoolingUnspecified {
		return C.LLAMA_POOLING_TYPE_UNSPECIFIED
	}
	return int(p) - 1
}

// String is the pooling's name: "mean", "cls", "last", "rank", "none" or "".
func (p Pooling) String() string {
	switch p {
	case PoolingNone:
		return "none"
	case PoolingMean:
		return "mean"
	case PoolingCLS:
		return "cls"
	case PoolingLast:
		return "last"
	case PoolingRank:
		return "rank"
	}
	return ""
}

// Pooling is the pooling the context applies: the one it was created with, else the model's.
func (c *Context) Pooling() Pooling {
	t := int(C.llama_pooling_type(c.c))
	if t < 0 {
		return PoolingUnspecified
	}
	return Pooling(t + 1)
}

// HasMemory reports whether the context keeps a KV cache: false for encoders (BERT), whose
// every Decode sees only its own batch.
func (c *Context) HasMemory() bool { return C.llama_get_memory(c.c) != nil }

// SequenceEmbeddings appends to dst the pooled vector of sequence seq after the last Decode or
// Encode (EmbeddingLength floats; ClassifierOutputs floats with rank pooling). It returns dst
// unchanged when the context has no pooling or seq had no tokens in the batch. The values are
// copied.
func (c *Context) SequenceEmbeddings(dst []float32, seq int) []float32 {
	p := C.llama_get_embeddings_seq(c.c, C.llama_seq_id(seq))
	if p == nil {
		return dst
	}
	n := int(C.llama_model_n_embd(c.model.c))
	if c.Pooling() == PoolingRank {
		n = int(C.llama_model_n_cls_out(c.model.c))
	}
	return append(dst, unsafe.Slice((*float32)(unsafe.Pointer(p)), n)...)
}

// TokenAttr reports whether token is a control token (<|im_start|>) or a user-defined one (an
// added token such as OuteTTS's <|123|>): both are matched whole in text when tokenizing with
// parseSpecial.
func (m *Model) TokenAttr(token int32) (control, userDefined bool) {
	attr := C.llama_vocab_get_attr(m.vocab, C.llama_token(token))
	return attr&C.LLAMA_TOKEN_ATTR_CONTROL != 0, attr&C.LLAMA_TOKEN_ATTR_USER_DEFINED != 0
}

// VocabText is the stored text of token in the vocabulary, as the GGUF holds it (SentencePiece
// pieces keep their "▁"); "" for a token out of range.
func (m *Model) VocabText(token int32) string {
	if token < 0 || int(token) >= m.VocabSize() {
		return ""
	}
	t := C.llama_vocab_get_text(m.vocab, C.llama_token(token))
	if t == nil {
		return ""
	}
	return C.GoString(t)
}
