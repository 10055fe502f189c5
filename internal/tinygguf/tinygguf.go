// Package tinygguf writes small random-weight GGUF models that real llama.cpp loads and runs:
// a llama-architecture LLM with a SentencePiece-style vocabulary and a ChatML chat template.
// Tests and benchmarks use them, since no weights can be
// downloaded where they run. The output is gibberish, but it goes through the real loading,
// tokenizing, decoding and sampling code.
package tinygguf

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/ollama/ollama/fs/ggml"
)

// Options says what model to write.
type Options struct {
	// Arch is "llama" (the default and, for now, the only one).
	Arch string
	// Size is "tiny" (default: a few hundred KB, F32) or "bench" (about 270 MB, F16: big enough
	// that timings reflect matrix work rather than call overhead).
	Size string
	// Seed makes the weights deterministic.
	Seed int64
	// ChatTemplate is stored as tokenizer.chat_template; "" stores a ChatML template.
	ChatTemplate string
	// ContextLength is the trained context length; 0 = the size's default.
	ContextLength int
}

// ChatMLTemplate is the default chat template: <|im_start|>role\ncontent<|im_end|>\n per message.
const ChatMLTemplate = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// shape is a model's dimensions.
type shape struct {
	embd, layers, heads, kvHeads, ff, ctx int
	f16                                   bool
}

func shapeFor(size string) (shape, error) {
	switch size {
	case "", "tiny":
		return shape{embd: 64, layers: 2, heads: 4, kvHeads: 2, ff: 128, ctx: 2048}, nil
	case "bench":
		return shape{embd: 1024, layers: 12, heads: 16, kvHeads: 4, ff: 2816, ctx: 4096, f16: true}, nil
	}
	return shape{}, fmt.Errorf("unknown size %q: want tiny or bench", size)
}

// Write writes the model to path atomically: a temp file in the same directory, fsynced, then
// renamed over path.
func Write(path string, opts Options) (err error) {
	s, err := shapeFor(opts.Size)
	if err != nil {
		return err
	}
	if opts.ContextLength > 0 {
		s.ctx = opts.ContextLength
	}
	var kv ggml.KV
	var tensors []*ggml.Tensor
	switch opts.Arch {
	case "", "llama":
		kv, tensors = llamaModel(s, opts)
	default:
		return fmt.Errorf("unknown arch %q: want llama", opts.Arch)
	}

	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = ggml.WriteGGUF(f, kv, tensors); err != nil {
		return fmt.Errorf("write gguf: %w", err)
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// GGML tensor types.
const (
	typeF32 = 0
	typeF16 = 1
)

// randomTensor is a tensor whose data is generated on write: normal(0, std) or, with std 0,
// all ones (norm weights). The stream depends only on the seed and the name, so concurrent
// writes in any order give the same file.
type randomTensor struct {
	n    uint64
	f16  bool
	std  float64
	seed uint64
}

func (t *randomTensor) WriteTo(w io.Writer) (int64, error) {
	rng := rand.New(rand.NewPCG(t.seed, 0x5eed))
	width := 4
	if t.f16 {
		width = 2
	}
	buf := make([]byte, 0, 64<<10)
	var written int64
	for i := uint64(0); i < t.n; i++ {
		v := 1.0
		if t.std != 0 {
			v = rng.NormFloat64() * t.std
		}
		if t.f16 {
			buf = binary.LittleEndian.AppendUint16(buf, float16(float32(v)))
		} else {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(float32(v)))
		}
		if len(buf)+width > cap(buf) || i == t.n-1 {
			n, err := w.Write(buf)
			written += int64(n)
			if err != nil {
				return written, err
			}
			buf = buf[:0]
		}
	}
	return written, nil
}

// tensorSet builds the tensor list of a model.
type tensorSet struct {
	seed    int64
	f16     bool
	tensors []*ggml.Tensor
}

// add appends a tensor of the given ggml shape (ne0 first). Matrices (2-D) are F16 in bench
// models; vectors stay F32, as llama.cpp expects for norms and biases.
func (ts *tensorSet) add(name string, std float64, dims ...int) {
	n := uint64(1)
	shape := make([]uint64, len(dims))
	for i, d := range dims {
		shape[i] = uint64(d)
		n *= uint64(d)
	}
	f16 := ts.f16 && len(dims) == 2
	kind := uint32(typeF32)
	if f16 {
		kind = typeF16
	}
	seed := uint64(ts.seed)*0x9e3779b97f4a7c15 ^ hashName(name)
	ts.tensors = append(ts.tensors, &ggml.Tensor{Name: name, Kind: kind, Shape: shape,
		WriterTo: &randomTensor{n: n, f16: f16, std: std, seed: seed}})
}

func hashName(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// float16 converts to IEEE half precision, rounding to nearest even.
func float16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case exp >= 31:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint(14 - exp)
		half := uint32(1) << (shift - 1)
		r := mant >> shift
		if mant&(half*2-1) > half || mant&(half*2-1) == half && r&1 == 1 {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && r&1 == 1 {
		r++
	}
	return sign | uint16(r)
}
