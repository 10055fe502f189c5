package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"math"
	"unsafe"

	binding "github.com/ollama/ollama/llama"
)

// SamplerParams configures a sampler chain. Zero values disable the matching stage.
type SamplerParams struct {
	Temperature      float32 // <= 0 picks the most likely token (greedy)
	TopK             int
	TopP             float32
	MinP             float32
	RepeatPenalty    float32 // 1 or 0 disables
	RepeatLastN      int
	PresencePenalty  float32
	FrequencyPenalty float32
	Seed             uint32
	// Grammar is a GBNF grammar (root rule "root") the output must match; "" for none.
	Grammar string
	// IgnoreEOG never picks an end-of-generation token (benchmarks, llama.cpp's ignore_eos).
	IgnoreEOG bool
}

// Sampler is a llama.cpp sampler chain. Close frees it.
type Sampler struct {
	c *C.struct_llama_sampler
}

// ErrBadGrammar means llama.cpp could not parse the grammar.
var ErrBadGrammar = errors.New("invalid grammar")

// NewSampler builds the chain: grammar, penalties, top-k, top-p, min-p, temperature, then a
// seeded random pick (or greedy when temperature <= 0).
func NewSampler(m *Model, p SamplerParams) (*Sampler, error) {
	chain := C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
	add := func(s *C.struct_llama_sampler) { C.llama_sampler_chain_add(chain, s) }
	if p.Grammar != "" {
		cg := C.CString(p.Grammar)
		root := C.CString("root")
		g := C.llama_sampler_init_grammar(m.vocab, cg, root)
		C.free(unsafe.Pointer(cg))
		C.free(unsafe.Pointer(root))
		if g == nil {
			C.llama_sampler_free(chain)
			return nil, ErrBadGrammar
		}
		add(g)
	}
	if p.IgnoreEOG {
		eog := m.eogTokens()
		if len(eog) > 0 {
			bias := make([]C.llama_logit_bias, len(eog))
			for i, t := range eog {
				bias[i] = C.llama_logit_bias{token: C.llama_token(t), bias: C.float(math.Inf(-1))}
			}
			add(C.llama_sampler_init_logit_bias(C.int32_t(m.VocabSize()), C.int32_t(len(bias)), &bias[0]))
		}
	}
	if (p.RepeatPenalty != 0 && p.RepeatPenalty != 1) || p.PresencePenalty != 0 || p.FrequencyPenalty != 0 {
		penalty := p.RepeatPenalty
		if penalty == 0 {
			penalty = 1
		}
		add(C.llama_sampler_init_penalties(C.int32_t(p.RepeatLastN), C.float(penalty), C.float(p.FrequencyPenalty), C.float(p.PresencePenalty)))
	}
	if p.Temperature <= 0 {
		add(C.llama_sampler_init_greedy())
		return &Sampler{c: chain}, nil
	}
	if p.TopK > 0 {
		add(C.llama_sampler_init_top_k(C.int32_t(p.TopK)))
	}
	if p.TopP > 0 && p.TopP < 1 {
		add(C.llama_sampler_init_top_p(C.float(p.TopP), 1))
	}
	if p.MinP > 0 {
		add(C.llama_sampler_init_min_p(C.float(p.MinP), 1))
	}
	add(C.llama_sampler_init_temp(C.float(p.Temperature)))
	add(C.llama_sampler_init_dist(C.uint32_t(p.Seed)))
	return &Sampler{c: chain}, nil
}

// Sample picks the next token from the logits of output idx of the last Decode (-1 = the last
// output) and records it in the chain's state (penalties, grammar).
func (s *Sampler) Sample(c *Context, idx int) int32 {
	return int32(C.llama_sampler_sample(s.c, c.c, C.int32_t(idx)))
}

// Close frees the chain.
func (s *Sampler) Close() error {
	if s.c != nil {
		C.llama_sampler_free(s.c)
		s.c = nil
	}
	return nil
}

// SchemaToGrammar converts a JSON Schema to a GBNF grammar with llama.cpp's converter.
func SchemaToGrammar(schema []byte) (string, error) {
	g := binding.SchemaToGrammar(schema)
	if g == nil {
		return "", errors.New("JSON schema could not be converted to a grammar (unsupported or invalid schema)")
	}
	return string(g), nil
}
