package tinygguf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ollama/ollama/fs/ggml"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// Qwen2-VL: an LLM of architecture "qwen2vl", whose rotary positions are M-RoPE (each position
// has a temporal, a height and a width part, rotating their own sections of a head), and its
// vision projector "qwen2vl_merger". mtmd gives an image's embeddings 2-D positions: one
// temporal position for the whole image and its row and column, so an image of w×h tokens
// advances the sequence by max(w, h) positions, not by w·h.

// The vision tokens that mtmd puts around an image's embeddings for Qwen2-VL; the qwen2vl
// vocabulary holds them as control tokens.
const (
	visionStartToken = "<|vision_start|>"
	visionEndToken   = "<|vision_end|>"
)

// qwen2vlModel is the llama model of s with architecture qwen2vl: the same tensors plus Qwen2's
// query, key and value biases, the vision tokens in its vocabulary, and M-RoPE sections that
// split each head's rotary pairs between time, height and width as Qwen2-VL does (16/24/24 of
// 64 pairs). llama.cpp loads the biases as optional but its qwen2vl graph adds them
// unconditionally: without them creating a context crashes (a NULL tensor in ggml_add).
func qwen2vlModel(s shape, opts Options) (ggml.KV, []*ggml.Tensor) {
	tokens, scores, types := llamaVocab(s.vocab, visionStartToken, visionEndToken)
	llamaKV, tensors := llamaModelVocab(s, opts, tokens, scores, types)
	kv := ggml.KV{}
	for k, v := range llamaKV {
		if rest, ok := strings.CutPrefix(k, "llama."); ok {
			k = "qwen2vl." + rest
		}
		kv[k] = v
	}
	kv["general.architecture"] = "qwen2vl"
	ts := &tensorSet{seed: opts.Seed, f16: s.f16, tensors: tensors}
	kvDim := s.embd / s.heads * s.kvHeads
	for i := range s.layers {
		blk := fmt.Sprintf("blk.%d.", i)
		ts.add(blk+"attn_q.bias", zeros, s.embd)
		ts.add(blk+"attn_k.bias", zeros, kvDim)
		ts.add(blk+"attn_v.bias", zeros, kvDim)
	}
	pairs := s.embd / s.heads / 2
	temporal := pairs / 4
	height := (pairs - temporal) / 2
	kv["qwen2vl.rope.dimension_sections"] = []int32{int32(temporal), int32(height), int32(pairs - temporal - height), 0}
	return kv, ts.tensors
}

// Qwen2-VL's vision encoder as clip.cpp's qwen2vl graph runs it: the image, resized to keep its
// aspect ratio to multiples of 2·qwen2vlPatch pixels (at least qwen2vlMinImageTokens tokens),
// is cut into qwen2vlPatch-pixel patches by two convolutions whose outputs add, through a
// transformer with 2-D rotary positions, and each 2×2 block of patches is merged into one token
// by a two-layer MLP into the LLM's embedding space.
const (
	qwen2vlPatch  = 8
	qwen2vlMerge  = 2
	qwen2vlEmbd   = 64
	qwen2vlHeads  = 4
	qwen2vlFF     = 128
	qwen2vlLayers = 2
	// qwen2vlMergerIn is the merger's input: the embeddings of a 2×2 block of patches.
	qwen2vlMergerIn = qwen2vlEmbd * qwen2vlMerge * qwen2vlMerge
)

// Qwen2VLTokenPixels is the side, in pixels, of the square of the resized image that one image
// token stands for: an image resized to w×h pixels takes (w/Qwen2VLTokenPixels)·
// (h/Qwen2VLTokenPixels) tokens and max of the two positions.
const Qwen2VLTokenPixels = qwen2vlPatch * qwen2vlMerge

// WriteQwen2VL writes to dir a random-weight Qwen2-VL pair for llama.cpp: the LLM
// (qwen2vl.gguf, the tiny llama shape with architecture qwen2vl and M-RoPE) and its vision
// projector (mmproj-qwen2vl.gguf, projector type qwen2vl_merger). It returns the two paths.
func WriteQwen2VL(dir string, seed int64) (model, projector string, err error) {
	model = filepath.Join(dir, "qwen2vl.gguf")
	projector = filepath.Join(dir, "mmproj-qwen2vl.gguf")
	if err := Write(model, Options{Arch: "qwen2vl", Seed: seed}); err != nil {
		return "", "", err
	}
	llm, _ := shapeFor("llama", "tiny")
	kv, tensors := qwen2vlProjector(llm.embd, seed)
	kv["general.file_type"] = uint32(1) // MOSTLY_F16: the patch convolutions' kernels
	kv["general.parameter_count"] = parameterCount(tensors)
	if err := durable.Write(projector, 0o644, func(f *os.File) error { return ggml.WriteGGUF(f, kv, tensors) }); err != nil {
		return "", "", fmt.Errorf("write qwen2vl projector to %s: %w", projector, err)
	}
	return model, projector, nil
}

// qwen2vlProjector is the metadata and tensors of a Qwen2-VL mmproj projecting into outEmbd,
// with the names and ggml shapes (ne0 first) of clip.cpp's loader (clip-impl.h).
func qwen2vlProjector(outEmbd int, seed int64) (ggml.KV, []*ggml.Tensor) {
	kv := ggml.KV{
		"general.architecture":                     "clip",
		"general.name":                             "syn4pse-qwen2vl-tiny",
		"clip.projector_type":                      "qwen2vl_merger",
		"clip.has_vision_encoder":                  true,
		"clip.has_audio_encoder":                   false,
		"clip.vision.image_size":                   uint32(4 * Qwen2VLTokenPixels),
		"clip.vision.patch_size":                   uint32(qwen2vlPatch),
		"clip.vision.spatial_merge_size":           uint32(qwen2vlMerge),
		"clip.vision.embedding_length":             uint32(qwen2vlEmbd),
		"clip.vision.feed_forward_length":          uint32(qwen2vlFF),
		"clip.vision.block_count":                  uint32(qwen2vlLayers),
		"clip.vision.attention.head_count":         uint32(qwen2vlHeads),
		"clip.vision.attention.layer_norm_epsilon": float32(1e-6),
		"clip.vision.projection_dim":               uint32(outEmbd),
		// CLIP's normalisation, as Qwen2-VL's preprocessor has it.
		"clip.vision.image_mean": []float32{0.48145466, 0.4578275, 0.40821073},
		"clip.vision.image_std":  []float32{0.26862954, 0.26130258, 0.27577711},
	}
	ts := &tensorSet{seed: seed}
	// Qwen2-VL's 3-D patch convolution (two frames) is stored as two 2-D kernels, F16 for
	// im2col, and has no bias (clip.cpp asserts so).
	ts.addF16("v.patch_embd.weight", random, qwen2vlPatch, qwen2vlPatch, 3, qwen2vlEmbd)
	ts.addF16("v.patch_embd.weight.1", random, qwen2vlPatch, qwen2vlPatch, 3, qwen2vlEmbd)
	// qwen2vlFF != qwen2vlEmbd keeps clip.cpp from swapping up and down (old conversions).
	ts.addEncoderBlocks("v.", qwen2vlLayers, qwen2vlEmbd, qwen2vlFF, true)
	// The merger: a layer norm over each patch, then an MLP over each 2×2 block.
	ts.add("v.post_ln.weight", ones, qwen2vlEmbd)
	ts.add("v.post_ln.bias", zeros, qwen2vlEmbd)
	ts.add("mm.0.weight", random, qwen2vlMergerIn, qwen2vlMergerIn)
	ts.add("mm.0.bias", zeros, qwen2vlMergerIn)
	ts.add("mm.2.weight", random, qwen2vlMergerIn, outEmbd)
	ts.add("mm.2.bias", zeros, outEmbd)
	return kv, ts.tensors
}
