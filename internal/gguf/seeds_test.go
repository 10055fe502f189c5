package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// A minimal GGUF writer for the fuzz seeds: tinygguf's models are hundreds of KB, the fuzzer
// works best on inputs of a few.

type seedTensor struct {
	name string
	dims []uint64
	typ  uint32
}

// seedGGUF encodes a GGUF v3 file of string, uint32 and bool metadata and F32/F16 tensors
// (zero data), laid out as llama.cpp's writer lays them out.
func seedGGUF(kv [][2]any, tensors []seedTensor) []byte {
	alignment := uint64(defaultAlignment)
	for _, p := range kv {
		if p[0] == "general.alignment" {
			alignment = uint64(p[1].(uint32))
		}
	}
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	str := func(s string) { le(uint64(len(s))); b.WriteString(s) }
	b.WriteString(magic)
	le(uint32(3))
	le(uint64(len(tensors)))
	le(uint64(len(kv)))
	for _, p := range kv {
		str(p[0].(string))
		switch v := p[1].(type) {
		case string:
			le(typeString)
			str(v)
		case uint32:
			le(typeUint32)
			le(v)
		case bool:
			le(typeBool)
			le(v)
		case []string:
			le(typeArray)
			le(typeString)
			le(uint64(len(v)))
			for _, s := range v {
				str(s)
			}
		case []float32:
			le(typeArray)
			le(typeFloat32)
			le(uint64(len(v)))
			le(v)
		}
	}
	var offset uint64
	for _, t := range tensors {
		str(t.name)
		le(uint32(len(t.dims)))
		le(t.dims)
		le(t.typ)
		le(offset)
		offset = alignUp(offset+tensorBytes(t), alignment)
	}
	b.Write(make([]byte, alignUp(uint64(b.Len()), alignment)-uint64(b.Len())))
	b.Write(make([]byte, offset))
	return b.Bytes()
}

func tensorBytes(t seedTensor) uint64 {
	n := tensorTypes[t.typ].size
	for _, d := range t.dims {
		n *= d
	}
	return n
}

// fuzzSeeds are small valid files of each kind the architecture checks know, and corrupted
// copies of them.
func fuzzSeeds() map[string][]byte {
	f32 := func(name string, dims ...uint64) seedTensor { return seedTensor{name, dims, 0} }
	llama := seedGGUF([][2]any{{"general.architecture", "llama"}, {"llama.block_count", uint32(1)},
		{"tokenizer.ggml.tokens", []string{"<s>", "</s>", "a"}}, {"tokenizer.ggml.scores", []float32{0, 0, 0}}},
		[]seedTensor{f32("token_embd.weight", 4, 3), f32("blk.0.attn_q.weight", 4, 4), f32("output_norm.weight", 4)})
	qwen2vl := seedGGUF([][2]any{{"general.architecture", "qwen2vl"}, {"qwen2vl.block_count", uint32(1)}},
		[]seedTensor{f32("blk.0.attn_q.bias", 4), f32("blk.0.attn_k.bias", 4), f32("blk.0.attn_v.bias", 4)})
	var merger []seedTensor
	for _, n := range []string{"v.patch_embd.weight", "v.patch_embd.weight.1", "v.blk.0.attn_q.weight", "v.blk.0.attn_k.weight",
		"v.blk.0.attn_v.weight", "v.blk.0.attn_q.bias", "v.blk.0.attn_k.bias", "v.blk.0.attn_v.bias", "mm.0.weight", "mm.2.weight"} {
		merger = append(merger, f32(n, 4))
	}
	projector := seedGGUF([][2]any{{"general.architecture", "clip"}, {"clip.projector_type", "qwen2vl_merger"},
		{"clip.has_vision_encoder", true}, {"clip.vision.block_count", uint32(1)}, {"general.alignment", uint32(64)}}, merger)
	var whisper []seedTensor
	for _, n := range []string{"a.position_embd.weight", "a.blk.0.attn_q.weight", "a.blk.0.attn_k.weight", "a.blk.0.attn_v.weight",
		"a.blk.0.ln1.weight", "a.blk.0.ln1.bias", "a.blk.0.ln2.weight", "a.blk.0.ln2.bias", "a.blk.0.attn_q.bias", "a.blk.0.attn_v.bias"} {
		whisper = append(whisper, seedTensor{n, []uint64{2, 2}, 1})
	}
	audio := seedGGUF([][2]any{{"general.architecture", "clip"}, {"clip.projector_type", "qwen2a"},
		{"clip.has_audio_encoder", true}, {"clip.audio.block_count", uint32(1)}}, whisper)
	seeds := map[string][]byte{"llama": llama, "qwen2vl": qwen2vl, "qwen2vl-projector": projector, "qwen2a-projector": audio}
	corrupt := func(src []byte, at int, v uint64) []byte {
		b := append([]byte{}, src...)
		binary.LittleEndian.PutUint64(b[at:], v)
		return b
	}
	seeds["huge-tensor-count"] = corrupt(llama, 8, 1<<40)
	seeds["huge-key-length"] = corrupt(llama, 24, 1<<50)
	seeds["truncated"] = llama[:len(llama)/2]
	seeds["bad-magic"] = append([]byte("GGUX"), llama[4:]...)
	seeds["projector-no-bias"] = bytes.Replace(projector, []byte("v.blk.0.attn_k.bias"), []byte("v.blk.0.attn_k.biaz"), 1)
	return seeds
}

func TestFuzzSeeds(t *testing.T) {
	for name, b := range fuzzSeeds() {
		_, err := Read(bytes.NewReader(b), int64(len(b)))
		if err == nil {
			var g *File
			g, _ = Read(bytes.NewReader(b), int64(len(b)))
			err = CheckArchitecture(g)
		}
		valid := name == "llama" || name == "qwen2vl" || name == "qwen2vl-projector" || name == "qwen2a-projector"
		if valid != (err == nil) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestWriteFuzzSeeds writes the seeds to testdata/fuzz/FuzzGGUFCheck when
// SYN4PSE_WRITE_FUZZ_SEEDS=1; without it the committed files must be the seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzGGUFCheck")
	for name, b := range fuzzSeeds() {
		path := filepath.Join(dir, "seed-"+name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if os.Getenv("SYN4PSE_WRITE_FUZZ_SEEDS") == "1" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Errorf("%s is not the seed fuzzSeeds makes (SYN4PSE_WRITE_FUZZ_SEEDS=1 rewrites it): %v", path, err)
		}
	}
}
