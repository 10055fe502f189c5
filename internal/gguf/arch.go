package gguf

import "fmt"

// What llama.cpp dereferences without checking. Its loaders refuse a file that lacks a tensor
// they require, but some tensors are loaded as optional and then used unconditionally by an
// architecture's graph, or asserted absent: a file without them (or with them) makes llama.cpp
// crash when it builds the graph (creating a context, or initialising a projector), not fail.
// These checks cover the architectures and projector types this node serves, from this
// build's llama.cpp (src/models/*.cpp, tools/mtmd/clip.cpp and models/*.cpp).

// biasedAttention are the LLM architectures whose graph adds the query, key and value biases
// of every layer unconditionally (llama-model.cpp loads them as not required).
var biasedAttention = map[string]bool{"qwen2vl": true, "dream": true}

// whisperProjectors are the audio projector types that clip.cpp runs with its Whisper encoder
// graph, which reads layer 0 and asserts on its biases.
var whisperProjectors = map[string]bool{"qwen2a": true, "ultravox": true, "voxtral": true, "glma": true}

// CheckArchitecture refuses a file whose architecture's graph would dereference a tensor the
// file lacks, or assert on one it holds.
func CheckArchitecture(f *File) error {
	arch := f.Architecture()
	if arch == "clip" {
		return checkProjector(f)
	}
	if biasedAttention[arch] {
		layers, _ := f.Uint(arch + ".block_count")
		for i := uint64(0); i < layers; i++ {
			for _, name := range []string{"attn_q.bias", "attn_k.bias", "attn_v.bias"} {
				if err := f.require(fmt.Sprintf("blk.%d.%s", i, name), arch+" models"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkProjector(f *File) error {
	for _, enc := range []struct{ prefix, modality string }{{"v", "vision"}, {"a", "audio"}} {
		if !f.bools["clip.has_"+enc.modality+"_encoder"] {
			continue
		}
		if err := checkEncoderLayers(f, enc.prefix, enc.modality); err != nil {
			return err
		}
		typ, ok := f.String("clip." + enc.modality + ".projector_type")
		if !ok {
			typ, _ = f.String("clip.projector_type")
		}
		if err := checkProjectorType(f, typ); err != nil {
			return err
		}
	}
	return nil
}

// checkEncoderLayers requires every encoder layer's attention projections: each clip.cpp graph
// multiplies by the query, key and value weights (or the fused qkv weight) of every layer.
func checkEncoderLayers(f *File, prefix, modality string) error {
	layers, _ := f.Uint("clip." + modality + ".block_count")
	for i := uint64(0); i < layers; i++ {
		blk := fmt.Sprintf("%s.blk.%d.", prefix, i)
		if f.has(blk + "attn_qkv.weight") {
			continue
		}
		for _, name := range []string{"attn_q.weight", "attn_k.weight", "attn_v.weight"} {
			if err := f.require(blk+name, "a "+modality+" encoder"); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkProjectorType(f *File, typ string) error {
	what := "projector type " + typ
	switch {
	case typ == "qwen2vl_merger" || typ == "qwen2.5vl_merger":
		for _, name := range []string{"v.patch_embd.weight", "v.patch_embd.weight.1"} {
			if err := f.require(name, what); err != nil {
				return err
			}
		}
		for _, name := range []string{"v.patch_embd.bias", "v.class_embd"} {
			if err := f.forbid(name, what); err != nil {
				return err
			}
		}
		layers, _ := f.Uint("clip.vision.block_count")
		for i := uint64(0); i < layers; i++ {
			for _, name := range []string{"attn_q.bias", "attn_k.bias", "attn_v.bias"} {
				if err := f.require(fmt.Sprintf("v.blk.%d.%s", i, name), what); err != nil {
					return err
				}
			}
		}
	case typ == "mlp":
		for _, name := range []string{"v.patch_embd.weight", "v.position_embd.weight"} {
			if err := f.require(name, what); err != nil {
				return err
			}
		}
	case whisperProjectors[typ]:
		if layers, _ := f.Uint("clip.audio.block_count"); layers == 0 {
			return invalid("%s needs clip.audio.block_count of at least 1", what)
		}
		for _, name := range []string{"a.position_embd.weight", "a.blk.0.ln1.weight", "a.blk.0.ln1.bias", "a.blk.0.ln2.weight",
			"a.blk.0.ln2.bias", "a.blk.0.attn_q.bias", "a.blk.0.attn_v.bias"} {
			if err := f.require(name, what); err != nil {
				return err
			}
		}
		return f.forbid("a.blk.0.attn_k.bias", what)
	}
	return nil
}

func (f *File) has(name string) bool {
	if f.names == nil {
		f.names = make(map[string]bool, len(f.Tensors))
		for _, t := range f.Tensors {
			f.names[t.Name] = true
		}
	}
	return f.names[name]
}

func (f *File) require(name, who string) error {
	if !f.has(name) {
		return invalid("tensor %s is missing: llama.cpp's graph for %s uses it unchecked", name, who)
	}
	return nil
}

func (f *File) forbid(name, who string) error {
	if f.has(name) {
		return invalid("tensor %s is present, which llama.cpp's graph for %s asserts against", name, who)
	}
	return nil
}
