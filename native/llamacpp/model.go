package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"github.com/ekisa-team/syn4pse/internal/durable"
	"github.com/ekisa-team/syn4pse/internal/gguf"
)

// ModelParams says how to load a model.
type ModelParams struct {
	// GPULayers is the number of layers offloaded to accelerators; -1 offloads all.
	GPULayers int
	// MainGPU is -1 to split the layers over every GPU (llama.cpp's layer split), else the
	// index, among the GPU devices, of the one GPU that holds the whole model. On a machine
	// without GPUs it is ignored.
	MainGPU int
	// NoMmap reads the file into memory instead of mapping it.
	NoMmap bool
}

// Model is a loaded GGUF model. Close frees it.
type Model struct {
	c     *C.struct_llama_model
	vocab *C.struct_llama_vocab
}

// LoadModel loads the GGUF file at path. It fails with a readable error for a missing file, a
// file the GGUF check refuses (gguf.Check: crafted counts, offsets, types, or tensors the
// architecture's graph would use unchecked; the error wraps gguf.ErrInvalid) or a file llama.cpp
// rejects (unknown architecture, missing tensors).
func LoadModel(path string, p ModelParams) (*Model, error) {
	Init()
	if err := gguf.Check(path); err != nil {
		return nil, err
	}
	params := C.llama_model_default_params()
	params.n_gpu_layers = C.int32_t(p.GPULayers)
	if p.GPULayers < 0 {
		params.n_gpu_layers = 999
	}
	if gpus := gpuCount(); p.MainGPU >= 0 && gpus > 0 && p.GPULayers != 0 {
		if p.MainGPU >= gpus {
			return nil, fmt.Errorf("main_gpu %d: this node has %d GPU(s), numbered from 0 (see `syn4pse status`)", p.MainGPU, gpus)
		}
		params.split_mode = C.LLAMA_SPLIT_MODE_NONE
		params.main_gpu = C.int32_t(p.MainGPU)
	}
	params.use_mmap = C.bool(!p.NoMmap)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	m := C.llama_model_load_from_file(cpath, params)
	if m == nil {
		return nil, errors.New("llama.cpp could not load the file (not a GGUF model, an unsupported architecture, or truncated; the debug log has llama.cpp's reason)")
	}
	return &Model{c: m, vocab: C.llama_model_get_vocab(m)}, nil
}

// Close frees the model. Contexts and samplers made from it must be closed first.
func (m *Model) Close() error {
	if m.c != nil {
		C.llama_model_free(m.c)
		m.c, m.vocab = nil, nil
	}
	return nil
}

// Meta returns the GGUF metadata value of key as a string.
func (m *Model) Meta(key string) (string, bool) {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	buf := make([]byte, 256)
	for {
		n := int(C.llama_model_meta_val_str(m.c, ckey, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))))
		if n < 0 {
			return "", false
		}
		if n < len(buf) {
			return string(buf[:n]), true
		}
		buf = make([]byte, n+1)
	}
}

// ChatTemplate is the model's default chat template (tokenizer.chat_template), or "".
func (m *Model) ChatTemplate() string {
	t := C.llama_model_chat_template(m.c, nil)
	if t == nil {
		return ""
	}
	return C.GoString(t)
}

// Description is llama.cpp's one-line summary, e.g. "llama 7B Q4_0".
func (m *Model) Description() string {
	buf := make([]byte, 256)
	n := int(C.llama_model_desc(m.c, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))))
	if n < 0 {
		return ""
	}
	return string(buf[:min(n, len(buf)-1)])
}

// SizeBytes is the total size of the model's tensors.
func (m *Model) SizeBytes() int64 { return int64(C.llama_model_size(m.c)) }

// ParamCount is the number of parameters.
func (m *Model) ParamCount() int64 { return int64(C.llama_model_n_params(m.c)) }

// TrainContextLength is the context length the model was trained with.
func (m *Model) TrainContextLength() int { return int(C.llama_model_n_ctx_train(m.c)) }

// EmbeddingLength is the model's hidden size.
func (m *Model) EmbeddingLength() int { return int(C.llama_model_n_embd(m.c)) }

// VocabSize is the number of tokens in the vocabulary.
func (m *Model) VocabSize() int { return int(C.llama_vocab_n_tokens(m.vocab)) }

// AddBOS reports whether prompts should start with the BOS token.
func (m *Model) AddBOS() bool { return bool(C.llama_vocab_get_add_bos(m.vocab)) }

// BOS is the beginning-of-sequence token, or -1.
func (m *Model) BOS() int32 { return int32(C.llama_vocab_bos(m.vocab)) }

// EOS is the end-of-sequence token, or -1.
func (m *Model) EOS() int32 { return int32(C.llama_vocab_eos(m.vocab)) }

// SEP is the sentence separator token (BERT's [SEP]), or -1.
func (m *Model) SEP() int32 { return int32(C.llama_vocab_sep(m.vocab)) }

// IsEOG reports whether token ends generation (EOS, EOT, <|im_end|> and the like).
func (m *Model) IsEOG(token int32) bool {
	return bool(C.llama_vocab_is_eog(m.vocab, C.llama_token(token)))
}

// eogTokens lists every end-of-generation token of the vocabulary.
func (m *Model) eogTokens() []int32 {
	var eog []int32
	for t := range int32(m.VocabSize()) {
		if m.IsEOG(t) {
			eog = append(eog, t)
		}
	}
	return eog
}

// Tokenize turns text into tokens. addSpecial adds BOS/EOS as the model asks; parseSpecial turns
// control-token text such as "<|im_start|>" into the control token.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	if len(text) > 1<<30 {
		return nil, fmt.Errorf("tokenize: text of %d bytes is too long", len(text))
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	tokens := make([]int32, len(text)+2)
	for {
		n := int(C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)),
			(*C.llama_token)(unsafe.Pointer(unsafe.SliceData(tokens))), C.int32_t(len(tokens)),
			C.bool(addSpecial), C.bool(parseSpecial)))
		switch {
		case n >= 0:
			return tokens[:n], nil
		case n == -(1 << 31):
			return nil, errors.New("tokenize: token count overflows")
		default:
			tokens = make([]int32, -n)
		}
	}
}

// AppendPiece appends the bytes of token to buf. special renders control tokens as their text;
// without it they render as nothing. A piece may hold part of a UTF-8 character.
func (m *Model) AppendPiece(buf []byte, token int32, special bool) []byte {
	var local [64]byte
	n := int(C.llama_token_to_piece(m.vocab, C.llama_token(token), (*C.char)(unsafe.Pointer(&local[0])), C.int32_t(len(local)), 0, C.bool(special)))
	if n >= 0 {
		return append(buf, local[:n]...)
	}
	big := make([]byte, -n)
	n = int(C.llama_token_to_piece(m.vocab, C.llama_token(token), (*C.char)(unsafe.Pointer(&big[0])), C.int32_t(len(big)), 0, C.bool(special)))
	if n < 0 {
		return buf
	}
	return append(buf, big[:n]...)
}

// TokenText is the text of a token with control tokens rendered, e.g. "<s>".
func (m *Model) TokenText(token int32) string {
	if token < 0 {
		return ""
	}
	return string(m.AppendPiece(nil, token, true))
}

// Quantize writes src (a GGUF model, typically F16) to dst with its weights converted to
// typ: "q4_0", "q4_k_m", "q8_0" or "f16", using threads threads (0: all cores). dst appears whole
// or not at all: llama.cpp writes a temporary file beside it, which durable commits.
func Quantize(src, dst, typ string, threads int) error {
	ftypes := map[string]C.enum_llama_ftype{
		"q4_0": C.LLAMA_FTYPE_MOSTLY_Q4_0, "q4_k_m": C.LLAMA_FTYPE_MOSTLY_Q4_K_M,
		"q8_0": C.LLAMA_FTYPE_MOSTLY_Q8_0, "f16": C.LLAMA_FTYPE_MOSTLY_F16,
	}
	ftype, ok := ftypes[typ]
	if !ok {
		return fmt.Errorf("quantize: unknown type %q: want q4_0, q4_k_m, q8_0 or f16", typ)
	}
	if err := gguf.Check(src); err != nil {
		return fmt.Errorf("quantize %s: %w", src, err)
	}
	Init()
	tmp := durable.TempPath(dst)
	params := C.llama_model_quantize_default_params()
	params.ftype = ftype
	params.nthread = C.int32_t(threads)
	csrc, ctmp := C.CString(src), C.CString(tmp)
	defer C.free(unsafe.Pointer(csrc))
	defer C.free(unsafe.Pointer(ctmp))
	if rc := C.llama_model_quantize(csrc, ctmp, &params); rc != 0 {
		os.Remove(tmp)
		return fmt.Errorf("quantize %s to %s: llama.cpp failed (code %d; the debug log has its reason)", src, typ, rc)
	}
	return durable.Commit(tmp, dst)
}

// FileType names the model's quantization from general.file_type (llama_ftype): "Q4_K_M".
func (m *Model) FileType() string {
	s, ok := m.Meta("general.file_type")
	if !ok {
		return ""
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return s
	}
	names := map[int]string{
		0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
		10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
		16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
		22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
		28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
		38: "MXFP4",
	}
	if name, ok := names[n]; ok {
		return name
	}
	return fmt.Sprintf("type %d", n)
}
