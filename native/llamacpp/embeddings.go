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
