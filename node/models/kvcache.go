package models

import (
	"errors"
	"fmt"
	"os"

	"github.com/ollama/ollama/fs/ggml"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/gguf"
)

// A loaded model's KV cache holds, for every token of every sequence's context, a K and a V
// vector per layer, F16 (llama.cpp's default cache type), beside the weights. Its size per
// token comes from the model's GGUF header, as llama.cpp computes it:
//
//	bytes per token = 2 × Σ over layers of head_count_kv[layer] × (key_length + value_length)
//
// key_length and value_length default to embedding_length / head_count, head_count_kv to
// head_count; either may be one value or one per layer. A model whose attention is not causal
// (a BERT-style embedder) keeps no cache. Sliding-window layers are counted at full length,
// which overestimates the models that have them.

// maxHeaderArray is the longest metadata array kept when a header is read: per-layer values
// fit, vocabularies (100k+ tokens) are skipped over.
const maxHeaderArray = 4096

// sequenceStep is llama.cpp's granularity of a sequence's context: it rounds it up to 256.
const sequenceStep = 256

// kvCache is the shape of a model's KV cache, read once from its GGUF header.
type kvCache struct {
	// bytesPerToken is the cache of one token of one sequence over every layer; 0 when the
	// header could not tell or the model keeps no cache.
	bytesPerToken int64
	// trainContext is the model's training context length; 0 when unknown.
	trainContext int
}

// readKVCache reads the KV cache shape of the GGUF model at path. It reads the header only
// (metadata and tensor descriptions), never the weights, and only once gguf.Check passed it:
// the file is untrusted, and ggml.Decode believes its lengths.
func readKVCache(path string) (kvCache, error) {
	if err := gguf.Check(path); err != nil {
		return kvCache{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return kvCache{}, err
	}
	defer f.Close()
	g, err := ggml.Decode(f, maxHeaderArray)
	if err != nil {
		return kvCache{}, fmt.Errorf("read the GGUF header of %s: %w", path, err)
	}
	return kvCacheOf(g.KV())
}

// kvCacheOf computes the KV cache shape from a model's metadata.
func kvCacheOf(kv ggml.KV) (kvCache, error) {
	h := header{kv: kv, arch: kv.Architecture()}
	layers, ok := h.uint("block_count")
	if !ok || layers == 0 {
		return kvCache{}, h.missing("block_count")
	}
	train, _ := h.uint("context_length")
	c := kvCache{trainContext: int(train)}
	if causal, ok := kv[h.arch+".attention.causal"].(bool); ok && !causal {
		return c, nil
	}
	heads, ok := h.perLayer("attention.head_count", layers)
	if !ok {
		return kvCache{}, h.missing("attention.head_count")
	}
	kvHeads, ok := h.perLayer("attention.head_count_kv", layers)
	if !ok {
		kvHeads = heads
	}
	keyLen, okK := h.uint("attention.key_length")
	valueLen, okV := h.uint("attention.value_length")
	if !okK || !okV {
		embd, ok := h.uint("embedding_length")
		if !ok || heads[0] == 0 {
			return kvCache{}, h.missing("embedding_length")
		}
		if !okK {
			keyLen = embd / heads[0]
		}
		if !okV {
			valueLen = embd / heads[0]
		}
	}
	var perToken uint64
	for _, n := range kvHeads {
		perToken += n * (keyLen + valueLen)
	}
	c.bytesPerToken = int64(perToken * 2) // F16
	return c, nil
}

// sequenceLength is the context of one sequence: the configured context_length, else the
// model's training context capped at engine.DefaultContextLength, as the engine sets it; rounded
// up as llama.cpp rounds it.
func (c kvCache) sequenceLength(configured int) int {
	n := configured
	if n <= 0 {
		n = engine.DefaultContextLength
		if c.trainContext > 0 {
			n = min(c.trainContext, n)
		}
	}
	return (n + sequenceStep - 1) / sequenceStep * sequenceStep
}

// bytes is the cache of parallel sequences of contextLength tokens each (0: the default).
func (c kvCache) bytes(contextLength, parallel int) int64 {
	return int64(c.sequenceLength(contextLength)) * int64(max(parallel, 1)) * c.bytesPerToken
}

// header reads the architecture's keys ("llama.block_count") of a GGUF header.
type header struct {
	kv   ggml.KV
	arch string
}

// uint is the key's value as an unsigned integer, whatever integer type the file stores.
func (h header) uint(key string) (uint64, bool) {
	switch v := h.kv[h.arch+"."+key].(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	case int8:
		return uint64(v), v >= 0
	case int16:
		return uint64(v), v >= 0
	case int32:
		return uint64(v), v >= 0
	case int64:
		return uint64(v), v >= 0
	}
	return 0, false
}

// perLayer is the key's value for each of layers layers: one value for all, or an array of
// one per layer (int32 or uint32, as llama.cpp reads them).
func (h header) perLayer(key string, layers uint64) ([]uint64, bool) {
	if _, ok := h.kv[h.arch+"."+key]; !ok {
		return nil, false
	}
	out := make([]uint64, layers)
	if v, ok := h.uint(key); ok {
		for i := range out {
			out[i] = v
		}
		return out, true
	}
	values := h.kv.UintOrArrayValueAsArray(key, 0) // prefixes the architecture itself
	if uint64(len(values)) != layers {
		return nil, false
	}
	for i, v := range values {
		out[i] = uint64(v)
	}
	return out, true
}

// missing says which key a header lacks.
func (h header) missing(key string) error {
	return errors.New("the GGUF header has no usable " + h.arch + "." + key)
}
