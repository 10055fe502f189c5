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
	for i := range audioLayers {
		blk := fmt.Sprintf("a.blk.%d.", i)
		ts.add(blk+"ln1.weight", ones, audioEmbd)
		ts.add(blk+"ln1.bias", zeros, audioEmbd)
		ts.add(blk+"attn_q.weight", random, audioEmbd, audioEmbd)
		ts.add(blk+"attn_q.bias", zeros, audioEmbd)
		ts.add(blk+"attn_k.weight", random, audioEmbd, audioEmbd) // Whisper's key has no bias
		ts.add(blk+"attn_v.weight", random, audioEmbd, audioEmbd)
		ts.add(blk+"attn_v.bias", zeros, audioEmbd)
		ts.add(blk+"attn_out.weight", random, audioEmbd, audioEmbd)
		ts.add(blk+"attn_out.bias", zeros, audioEmbd)
		ts.add(blk+"ln2.weight", ones, audioEmbd)
		ts.add(blk+"ln2.bias", zeros, audioEmbd)
		ts.add(blk+"ffn_up.weight", random, audioEmbd, audioFF)
		ts.add(blk+"ffn_up.bias", zeros, audioFF)
		ts.add(blk+"ffn_down.weight", random, audioFF, audioEmbd)
		ts.add(blk+"ffn_down.bias", zeros, audioEmbd)
	}
	ts.add("a.post_ln.weight", ones, audioEmbd)
	ts.add("a.post_ln.bias", zeros, audioEmbd)
	ts.add("mm.a.fc.weight", random, audioEmbd, outEmbd)
	ts.add("mm.a.fc.bias", zeros, outEmbd)
	return kv, ts.tensors
}
