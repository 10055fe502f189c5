package tinygguf

import (
	"fmt"
	"os"

	"github.com/ollama/ollama/fs/ggml"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// Qwen2-Audio's encoder as llama.cpp's mtmd runs it (projector "qwen2a", clip.cpp's
// whisper-encoder graph): 16 kHz audio in 30-second chunks of 3000 mel frames, halved by the
// second convolution (1500 positions) and again by an average pool, then one linear layer into
// the LLM's embedding space. Of the audio projectors mtmd knows it has the fewest tensors.
const (
	// AudioSampleRate is the rate, in Hz, of the audio the audio projector takes.
	AudioSampleRate = 16000
	audioMelBins    = 128
	audioPositions  = 1500 // 3000 mel frames after the stride-2 convolution
	audioEmbd       = 64
	audioHeads      = 4
	audioFF         = 128
	audioLayers     = 1
)

// WriteAudioProjector writes to path a random-weight Qwen2-Audio multimodal projector (a GGUF
// "mmproj") for the tiny llama model of Write: its output width is that model's n_embd, so
// llama.cpp's mtmd accepts the pair. A few hundred KB; it loads in milliseconds.
func WriteAudioProjector(path string, seed int64) error {
	llm, _ := shapeFor("llama", "tiny")
	kv, tensors := audioProjector(llm.embd, seed)
	kv["general.file_type"] = uint32(1) // MOSTLY_F16: the convolution kernels
	kv["general.parameter_count"] = parameterCount(tensors)
	if err := durable.Write(path, 0o644, func(f *os.File) error { return ggml.WriteGGUF(f, kv, tensors) }); err != nil {
		return fmt.Errorf("write audio projector to %s: %w", path, err)
	}
	return nil
}

// audioProjector is the metadata and tensors of a Qwen2-Audio mmproj projecting into outEmbd,
// with the names and ggml shapes (ne0 first) of clip.cpp's loader (clip-impl.h).
func audioProjector(outEmbd int, seed int64) (ggml.KV, []*ggml.Tensor) {
	kv := ggml.KV{
		"general.architecture":                    "clip",
		"general.name":                            "syn4pse-qwen2a-tiny",
		"clip.projector_type":                     "qwen2a",
		"clip.has_audio_encoder":                  true,
		"clip.has_vision_encoder":                 false,
		"clip.audio.num_mel_bins":                 uint32(audioMelBins),
		"clip.audio.embedding_length":             uint32(audioEmbd),
		"clip.audio.feed_forward_length":          uint32(audioFF),
		"clip.audio.block_count":                  uint32(audioLayers),
		"clip.audio.attention.head_count":         uint32(audioHeads),
		"clip.audio.attention.layer_norm_epsilon": float32(1e-5),
		"clip.audio.projection_dim":               uint32(outEmbd),
	}
	ts := &tensorSet{seed: seed}
	// The convolution kernels are F16, as llama.cpp's converter stores them (im2col takes its
	// type from the kernel); the biases broadcast over the frames: [1, channels].
	ts.addKind("a.conv1d.1.weight", true, random, 3, audioMelBins, audioEmbd)
	ts.add("a.conv1d.1.bias", zeros, 1, audioEmbd)
	ts.addKind("a.conv1d.2.weight", true, random, 3, audioEmbd, audioEmbd)
	ts.add("a.conv1d.2.bias", zeros, 1, audioEmbd)
	ts.add("a.position_embd.weight", random, audioEmbd, audioPositions)
	// Whisper's attention key has no bias.
	ts.addEncoderBlocks("a.", audioLayers, audioEmbd, audioFF, false)
	ts.add("a.post_ln.weight", ones, audioEmbd)
	ts.add("a.post_ln.bias", zeros, audioEmbd)
	ts.add("mm.a.fc.weight", random, audioEmbd, outEmbd)
	ts.add("mm.a.fc.bias", zeros, outEmbd)
	return kv, ts.tensors
}

// A CLIP vision encoder with LLaVA's "mlp" projector (clip.cpp's llava graph): the image, padded
// to a square and resized to visionImageSize, is cut into visionPatch-pixel patches, one token
// each ((32/8)² = 16 tokens an image), through a transformer and a two-layer MLP into the LLM's
// embedding space. LLaVA reads the second-to-last layer's output, so of visionLayers only the
// first runs.
const (
	visionImageSize = 32
	visionPatch     = 8
	visionEmbd      = 64
	visionHeads     = 4
	visionFF        = 128
	visionLayers    = 2
	visionHidden    = 64 // the projector's hidden width
)

// VisionImageTokens is how many positions one image fills in the prompt with the vision
// projector, whatever the image's size.
const VisionImageTokens = (visionImageSize / visionPatch) * (visionImageSize / visionPatch)

// WriteVisionProjector writes to path a random-weight LLaVA-style multimodal projector (a GGUF
// "mmproj", CLIP encoder and "mlp" projector) for the tiny llama model of Write: its output width
// is that model's n_embd, so llama.cpp's mtmd accepts the pair. A few hundred KB; it loads in
// milliseconds and encodes an image into VisionImageTokens positions.
func WriteVisionProjector(path string, seed int64) error {
	llm, _ := shapeFor("llama", "tiny")
	kv, tensors := visionProjector(llm.embd, seed)
	kv["general.file_type"] = uint32(1) // MOSTLY_F16: the patch convolution's kernel
	kv["general.parameter_count"] = parameterCount(tensors)
	if err := durable.Write(path, 0o644, func(f *os.File) error { return ggml.WriteGGUF(f, kv, tensors) }); err != nil {
		return fmt.Errorf("write vision projector to %s: %w", path, err)
	}
	return nil
}

// visionProjector is the metadata and tensors of a LLaVA mmproj projecting into outEmbd, with
// the names and ggml shapes (ne0 first) of clip.cpp's loader (clip-impl.h).
func visionProjector(outEmbd int, seed int64) (ggml.KV, []*ggml.Tensor) {
	kv := ggml.KV{
		"general.architecture":                     "clip",
		"general.name":                             "syn4pse-llava-tiny",
		"clip.projector_type":                      "mlp",
		"clip.has_vision_encoder":                  true,
		"clip.has_audio_encoder":                   false,
		"clip.use_gelu":                            true,
		"clip.vision.image_size":                   uint32(visionImageSize),
		"clip.vision.patch_size":                   uint32(visionPatch),
		"clip.vision.embedding_length":             uint32(visionEmbd),
		"clip.vision.feed_forward_length":          uint32(visionFF),
		"clip.vision.block_count":                  uint32(visionLayers),
		"clip.vision.attention.head_count":         uint32(visionHeads),
		"clip.vision.attention.layer_norm_epsilon": float32(1e-5),
		"clip.vision.projection_dim":               uint32(outEmbd),
		// CLIP's normalisation, as LLaVA's converter stores it.
		"clip.vision.image_mean": []float32{0.48145466, 0.4578275, 0.40821073},
		"clip.vision.image_std":  []float32{0.26862954, 0.26130258, 0.27577711},
	}
	ts := &tensorSet{seed: seed}
	// The patch embedding is a convolution with a patch-sized kernel and stride, F16 for im2col.
	ts.addF16("v.patch_embd.weight", random, visionPatch, visionPatch, 3, visionEmbd)
	ts.add("v.patch_embd.bias", zeros, visionEmbd)
	ts.add("v.position_embd.weight", random, visionEmbd, VisionImageTokens)
	ts.add("v.pre_ln.weight", ones, visionEmbd)
	ts.add("v.pre_ln.bias", zeros, visionEmbd)
	// clip.cpp swaps up and down of LLaVA projectors whose ffn_down has ne0 == n_embd (old
	// conversions): visionFF != visionEmbd keeps these as they are.
	ts.addEncoderBlocks("v.", visionLayers, visionEmbd, visionFF, true)
	ts.add("mm.0.weight", random, visionEmbd, visionHidden)
	ts.add("mm.0.bias", zeros, visionHidden)
	ts.add("mm.2.weight", random, visionHidden, outEmbd)
	ts.add("mm.2.bias", zeros, outEmbd)
	return kv, ts.tensors
}

// addEncoderBlocks adds the transformer blocks of a clip.cpp encoder under prefix ("a." audio,
// "v." vision): pre-norm attention and a two-layer feed-forward of width ff. keyBias false
// leaves out the attention key's bias (Whisper's encoder has none).
func (ts *tensorSet) addEncoderBlocks(prefix string, layers, embd, ff int, keyBias bool) {
	for i := range layers {
		blk := fmt.Sprintf("%sblk.%d.", prefix, i)
		ts.add(blk+"ln1.weight", ones, embd)
		ts.add(blk+"ln1.bias", zeros, embd)
		for _, proj := range []string{"attn_q", "attn_k", "attn_v", "attn_out"} {
			ts.add(blk+proj+".weight", random, embd, embd)
			if proj != "attn_k" || keyBias {
				ts.add(blk+proj+".bias", zeros, embd)
			}
		}
		ts.add(blk+"ln2.weight", ones, embd)
		ts.add(blk+"ln2.bias", zeros, embd)
		ts.add(blk+"ffn_up.weight", random, embd, ff)
		ts.add(blk+"ffn_up.bias", zeros, ff)
		ts.add(blk+"ffn_down.weight", random, ff, embd)
		ts.add(blk+"ffn_down.bias", zeros, embd)
	}
}
