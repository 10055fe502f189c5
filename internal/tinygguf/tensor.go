package tinygguf

import (
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"

	"github.com/ollama/ollama/fs/ggml"
)

// GGML tensor types.
const (
	typeF32 = 0
	typeF16 = 1
)

// weightStd is the standard deviation of random weights: small enough that activations stay
// finite through a dozen layers, as in a freshly initialised transformer.
const weightStd = 0.02

// fill says how a tensor's values are made.
type fill struct {
	// std > 0: normal(0, std) values; std == 0: every value is constant.
	std      float64
	constant float32
}

var (
	random = fill{std: weightStd}
	ones   = fill{constant: 1} // norm weights
	zeros  = fill{}            // biases
)

// randomTensor is tensor data generated as it is written, so a model of hundreds of MB never sits
// in memory. The stream depends only on the seed and the tensor's name: the writer runs tensors
// concurrently, and any order gives the same bytes.
type randomTensor struct {
	n    uint64
	f16  bool
	fill fill
	seed uint64
}

// WriteTo writes the tensor's values, little-endian, in 64 KiB chunks.
func (t *randomTensor) WriteTo(w io.Writer) (int64, error) {
	rng := rand.New(rand.NewPCG(t.seed, 0x5eed))
	width := 4
	if t.f16 {
		width = 2
	}
	buf := make([]byte, 0, 64<<10)
	var written int64
	flush := func() error {
		n, err := w.Write(buf)
		written += int64(n)
		buf = buf[:0]
		return err
	}
	for range t.n {
		v := t.fill.constant
		if t.fill.std != 0 {
			v = float32(rng.NormFloat64() * t.fill.std)
		}
		if t.f16 {
			buf = binary.LittleEndian.AppendUint16(buf, float16(v))
		} else {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		if len(buf)+width > cap(buf) {
			if err := flush(); err != nil {
				return written, err
			}
		}
	}
	if len(buf) > 0 {
		if err := flush(); err != nil {
			return written, err
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

// add appends a tensor of the given ggml shape (ne0 first). Matrices (2-D) are F16 in F16
// models; vectors stay F32, as llama.cpp expects for norms and biases.
func (ts *tensorSet) add(name string, f fill, dims ...int) {
	ts.addKind(name, ts.f16 && len(dims) == 2, f, dims...)
}

// addF32 appends a tensor that stays F32 whatever the model's type (as llama.cpp's converter
// keeps position and token-type embeddings).
func (ts *tensorSet) addF32(name string, f fill, dims ...int) {
	ts.addKind(name, false, f, dims...)
}

// addF16 appends a tensor stored F16 whatever the model's type (convolution kernels, which
// ggml's im2col path wants in F16).
func (ts *tensorSet) addF16(name string, f fill, dims ...int) {
	ts.addKind(name, true, f, dims...)
}

func (ts *tensorSet) addKind(name string, f16 bool, f fill, dims ...int) {
	n := uint64(1)
	shape := make([]uint64, len(dims))
	for i, d := range dims {
		shape[i] = uint64(d)
		n *= uint64(d)
	}
	kind := uint32(typeF32)
	if f16 {
		kind = typeF16
	}
	seed := uint64(ts.seed)*0x9e3779b97f4a7c15 ^ hashName(name)
	ts.tensors = append(ts.tensors, &ggml.Tensor{Name: name, Kind: kind, Shape: shape,
		WriterTo: &randomTensor{n: n, f16: f16, fill: f, seed: seed}})
}

// hashName is FNV-1a: a stable per-tensor seed.
func hashName(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// float16 converts to IEEE half precision, rounding to nearest even; out-of-range values become
// infinities.
func float16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case exp >= 31:
		return sign | 0x7c00
	case exp <= 0:
		// A subnormal half: shift the mantissa, with its implicit 1, into place.
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint(14 - exp)
		half := uint32(1) << (shift - 1)
		r := mant >> shift
		rem := mant & (half*2 - 1)
		if rem > half || rem == half && r&1 == 1 {
			r++
		}
		return sign | uint16(r)
	}
	// Rounding may carry into the exponent, up to infinity: that is the right result.
	r := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && r&1 == 1 {
		r++
	}
	return sign | uint16(r)
}
