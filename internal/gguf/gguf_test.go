package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// validFiles writes one of each GGUF this node loads (LLM, embeddings, reranker, OuteTTS and
// its vocoder, Qwen2-VL and its projector, LLaVA and audio projectors) and returns their paths.
func validFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{}
	for name, opts := range map[string]tinygguf.Options{
		"llama":        {Seed: 1},
		"bert":         {Arch: "bert", Seed: 1},
		"rerank":       {Arch: "bert", Pooling: "rank", Seed: 1},
		"outetts":      {Arch: "outetts", Seed: 1},
		"wavtokenizer": {Arch: "wavtokenizer", Seed: 1},
	} {
		files[name] = filepath.Join(dir, name+".gguf")
		if err := tinygguf.Write(files[name], opts); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if files["qwen2vl"], files["qwen2vl-mmproj"], err = tinygguf.WriteQwen2VL(dir, 1); err != nil {
		t.Fatal(err)
	}
	files["vision-mmproj"] = filepath.Join(dir, "vision.gguf")
	if err := tinygguf.WriteVisionProjector(files["vision-mmproj"], 1); err != nil {
		t.Fatal(err)
	}
	files["audio-mmproj"] = filepath.Join(dir, "audio.gguf")
	if err := tinygguf.WriteAudioProjector(files["audio-mmproj"], 1); err != nil {
		t.Fatal(err)
	}
	return files
}

func TestValidFilesPass(t *testing.T) {
	for name, path := range validFiles(t) {
		if err := Check(path); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// readBytes parses b, which must be valid.
func readBytes(t *testing.T, b []byte) *File {
	t.Helper()
	f, err := Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tensorInfo is the position in b of the tensor description of name, just after its name.
func tensorInfo(t *testing.T, b []byte, name string) int {
	t.Helper()
	var key [8]byte
	binary.LittleEndian.PutUint64(key[:], uint64(len(name)))
	i := bytes.Index(b, append(key[:], name...))
	if i < 0 {
		t.Fatalf("no tensor %s", name)
	}
	return i + 8 + len(name)
}

func put32(b []byte, at int, v uint32) { binary.LittleEndian.PutUint32(b[at:], v) }
func put64(b []byte, at int, v uint64) { binary.LittleEndian.PutUint64(b[at:], v) }

// rename returns b with the tensor old renamed new; the data section, which may move to keep
// its alignment, gets the bytes it needs at the end.
func rename(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	at := tensorInfo(t, b, old) - len(old) - 8
	var name bytes.Buffer
	binary.Write(&name, binary.LittleEndian, uint64(len(new)))
	name.WriteString(new)
	out := append(append([]byte{}, b[:at]...), name.Bytes()...)
	out = append(out, b[at+8+len(old):]...)
	return append(out, make([]byte, defaultAlignment)...)
}

// insert returns b with extra inserted at position at.
func insert(b []byte, at int, extra []byte) []byte {
	return append(append(append([]byte{}, b[:at]...), extra...), b[at:]...)
}

func TestCraftedFilesRefused(t *testing.T) {
	files := validFiles(t)
	llama, err := os.ReadFile(files["llama"])
	if err != nil {
		t.Fatal(err)
	}
	valid := readBytes(t, llama)
	first, second := valid.Tensors[0], valid.Tensors[1]
	qwen2vl, err := os.ReadFile(files["qwen2vl-mmproj"])
	if err != nil {
		t.Fatal(err)
	}
	audio, err := os.ReadFile(files["audio-mmproj"])
	if err != nil {
		t.Fatal(err)
	}
	vision, err := os.ReadFile(files["vision-mmproj"])
	if err != nil {
		t.Fatal(err)
	}
	const q = "blk.0.attn_q.weight"

	cases := []struct {
		name   string
		src    []byte
		craft  func(b []byte) []byte
		reason string
	}{
		{"bad magic", llama, func(b []byte) []byte { copy(b, "GGUX"); return b }, `bad magic "GGUX"`},
		{"version 99", llama, func(b []byte) []byte { put32(b, 4, 99); return b }, "version 99"},
		{"version 1", llama, func(b []byte) []byte { put32(b, 4, 1); return b }, "version 1:"},
		{"tensor count 2^40", llama, func(b []byte) []byte { put64(b, 8, 1<<40); return b }, "tensor count 1099511627776"},
		{"metadata count 2^62", llama, func(b []byte) []byte { put64(b, 16, 1<<62); return b }, "metadata count"},
		{"key length past EOF", llama, func(b []byte) []byte { put64(b, 24, 1<<50); return b }, "string length 1125899906842624 passes the end of the file"},
		{"tensor offset past EOF", llama, func(b []byte) []byte {
			at := tensorInfo(t, b, q) + 4 + 8*2 + 4
			put64(b, at, 1<<30)
			return b
		}, "tensor " + q + " extends past end of file: offset 1073741824 size"},
		{"overlapping tensors", llama, func(b []byte) []byte {
			at := tensorInfo(t, b, second.Name) + 4 + 8*len(second.Dims) + 4
			put64(b, at, first.Offset)
			return b
		}, "tensor " + second.Name + " (offset 0) overlaps tensor " + first.Name},
		{"unaligned offset", llama, func(b []byte) []byte {
			at := tensorInfo(t, b, second.Name) + 4 + 8*len(second.Dims) + 4
			put64(b, at, second.Offset+4)
			return b
		}, "is not a multiple of the alignment 32"},
		{"unknown tensor type", llama, func(b []byte) []byte { put32(b, tensorInfo(t, b, q)+4+8*2, 31); return b }, "tensor " + q + " has unknown ggml type 31"},
		{"type 200", llama, func(b []byte) []byte { put32(b, tensorInfo(t, b, q)+4+8*2, 200); return b }, "unknown ggml type 200"},
		{"n_dims 9", llama, func(b []byte) []byte { put32(b, tensorInfo(t, b, q), 9); return b }, "tensor " + q + " has 9 dimensions, want 1 to 4"},
		{"n_dims 0", llama, func(b []byte) []byte { put32(b, tensorInfo(t, b, q), 0); return b }, "has 0 dimensions"},
		{"zero dimension", llama, func(b []byte) []byte { put64(b, tensorInfo(t, b, q)+4+8, 0); return b }, "dimension 1 is 0"},
		{"dims overflow", llama, func(b []byte) []byte {
			at := tensorInfo(t, b, q) + 4
			put64(b, at, 1<<40)
			put64(b, at+8, 1<<40)
			return b
		}, "overflow the element count"},
		{"row not a multiple of the block", llama, func(b []byte) []byte { put32(b, tensorInfo(t, b, q)+4+8*2, 10); return b }, "has 64 elements per row, not a multiple of its block of 256"},
		{"duplicate tensor name", llama, func(b []byte) []byte {
			copy(b[tensorInfo(t, b, "blk.0.attn_k.weight")-len(q):], q)
			return b
		}, `duplicate tensor name "` + q + `"`},
		{"tensor name too long", llama, func(b []byte) []byte {
			at := tensorInfo(t, b, q) - len(q) - 8
			put64(b, at, 100)
			return b
		}, "string length 100, longer than the 63 bytes allowed"},
		{"unknown value type", llama, func(b []byte) []byte { put32(b, 24+8+int(binary.LittleEndian.Uint64(b[24:])), 13); return b }, "unknown value type 13"},
		{"array of arrays", llama, func(b []byte) []byte {
			at := bytes.Index(b, []byte("tokenizer.ggml.scores")) + len("tokenizer.ggml.scores") + 4
			put32(b, at, uint32(typeArray))
			return b
		}, "array of arrays"},
		{"array length past EOF", llama, func(b []byte) []byte {
			at := bytes.Index(b, []byte("tokenizer.ggml.scores")) + len("tokenizer.ggml.scores") + 8
			put64(b, at, 1<<40)
			return b
		}, "1099511627776 elements of 4 bytes cannot fit"},
		{"string array past EOF", llama, func(b []byte) []byte {
			at := bytes.Index(b, []byte("tokenizer.ggml.tokens")) + len("tokenizer.ggml.tokens") + 8
			put64(b, at, 1<<40)
			return b
		}, "1099511627776 strings cannot fit"},
		{"alignment not a power of two", llama, func(b []byte) []byte {
			// general.alignment = 48 (uint32) as one more pair, in front of the first.
			var kv bytes.Buffer
			binary.Write(&kv, binary.LittleEndian, uint64(len("general.alignment")))
			kv.WriteString("general.alignment")
			binary.Write(&kv, binary.LittleEndian, typeUint32)
			binary.Write(&kv, binary.LittleEndian, uint32(48))
			put64(b, 16, binary.LittleEndian.Uint64(b[16:])+1)
			return insert(b, 24, kv.Bytes())
		}, "general.alignment 48 is not a power of two"},
		{"alignment not uint32", llama, func(b []byte) []byte {
			var kv bytes.Buffer
			binary.Write(&kv, binary.LittleEndian, uint64(len("general.alignment")))
			kv.WriteString("general.alignment")
			binary.Write(&kv, binary.LittleEndian, typeUint64)
			binary.Write(&kv, binary.LittleEndian, uint64(32))
			put64(b, 16, binary.LittleEndian.Uint64(b[16:])+1)
			return insert(b, 24, kv.Bytes())
		}, "general.alignment has type uint64, want uint32"},
		{"truncated in the header", llama, func(b []byte) []byte { return b[:int(valid.DataOffset)/2] }, "512 strings cannot fit in the 1307 bytes left"},
		{"truncated in the data", llama, func(b []byte) []byte { return b[:len(b)-1] }, "extends past end of file"},
		{"empty", llama, func([]byte) []byte { return nil }, "truncated"},
		{"qwen2vl projector without biases", qwen2vl, func(b []byte) []byte {
			// Renamed in place, the bias is missing and the file otherwise intact.
			at := tensorInfo(t, b, "v.blk.0.attn_q.bias") - 1
			b[at] = 'z'
			return b
		}, "tensor v.blk.0.attn_q.bias is missing: llama.cpp's graph for projector type qwen2vl_merger uses it unchecked"},
		{"qwen2vl projector with a patch bias", qwen2vl, func(b []byte) []byte { return rename(t, b, "v.post_ln.bias", "v.patch_embd.bias") },
			"tensor v.patch_embd.bias is present, which llama.cpp's graph for projector type qwen2vl_merger asserts against"},
		{"audio projector with a key bias", audio, func(b []byte) []byte { return rename(t, b, "a.post_ln.bias", "a.blk.0.attn_k.bias") },
			"a.blk.0.attn_k.bias is present"},
		{"audio projector without its position embeddings", audio, func(b []byte) []byte { return rename(t, b, "a.position_embd.weight", "a.position_embd.weighs") },
			"tensor a.position_embd.weight is missing"},
		{"vision projector without a key weight", vision, func(b []byte) []byte { return rename(t, b, "v.blk.1.attn_k.weight", "v.blk.1.attn_x.weight") },
			"tensor v.blk.1.attn_k.weight is missing: llama.cpp's graph for a vision encoder uses it unchecked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.craft(append([]byte{}, c.src...))
			path := filepath.Join(t.TempDir(), "crafted.gguf")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			err := Check(path)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("got %v, want a refusal saying %q", err, c.reason)
			}
		})
	}
}

// Qwen2-VL's LLM graph adds its attention biases unchecked: llama.cpp loads a file without them
// and then crashes creating a context.
func TestQwen2VLWithoutBiasesRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qwen2vl.gguf")
	err := tinygguf.Write(path, tinygguf.Options{Arch: "qwen2vl", Seed: 1, Drop: func(name string) bool { return strings.HasSuffix(name, ".attn_k.bias") }})
	if err != nil {
		t.Fatal(err)
	}
	want := "tensor blk.0.attn_k.bias is missing: llama.cpp's graph for qwen2vl models uses it unchecked"
	if err := Check(path); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestCheckNotAFile(t *testing.T) {
	if err := Check(t.TempDir()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a directory: %v", err)
	}
	if err := Check(filepath.Join(t.TempDir(), "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
}
