package tinygguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ollama/ollama/fs/ggml"
)

// decode reads the model at path back with Ollama's GGUF reader, arrays included.
func decode(t *testing.T, path string) *ggml.GGML {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := ggml.Decode(f, -1)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return g
}

// wantTensors is the tensor list llama.cpp's loader asks for (llama-model.cpp), in ggml order
// (ne0 first), with whether each is stored F16.
func wantTensors(arch string, s shape) map[string][]uint64 {
	u := func(dims ...int) []uint64 {
		out := make([]uint64, len(dims))
		for i, d := range dims {
			out[i] = uint64(d)
		}
		return out
	}
	want := map[string][]uint64{"token_embd.weight": u(s.embd, s.vocab)}
	if arch == "llama" {
		kvDim := s.embd / s.heads * s.kvHeads
		want["output_norm.weight"] = u(s.embd)
		for i := range s.layers {
			blk := fmt.Sprintf("blk.%d.", i)
			want[blk+"attn_norm.weight"] = u(s.embd)
			want[blk+"attn_q.weight"] = u(s.embd, s.embd)
			want[blk+"attn_k.weight"] = u(s.embd, kvDim)
			want[blk+"attn_v.weight"] = u(s.embd, kvDim)
			want[blk+"attn_output.weight"] = u(s.embd, s.embd)
			want[blk+"ffn_norm.weight"] = u(s.embd)
			want[blk+"ffn_gate.weight"] = u(s.embd, s.ff)
			want[blk+"ffn_up.weight"] = u(s.embd, s.ff)
			want[blk+"ffn_down.weight"] = u(s.ff, s.embd)
		}
		return want
	}
	want["token_types.weight"] = u(s.embd, 2)
	want["position_embd.weight"] = u(s.embd, s.ctx)
	want["token_embd_norm.weight"] = u(s.embd)
	want["token_embd_norm.bias"] = u(s.embd)
	for i := range s.layers {
		blk := fmt.Sprintf("blk.%d.", i)
		for _, p := range []string{"attn_q", "attn_k", "attn_v", "attn_output"} {
			want[blk+p+".weight"] = u(s.embd, s.embd)
			want[blk+p+".bias"] = u(s.embd)
		}
		for _, p := range []string{"attn_output_norm", "layer_output_norm"} {
			want[blk+p+".weight"] = u(s.embd)
			want[blk+p+".bias"] = u(s.embd)
		}
		want[blk+"ffn_up.weight"] = u(s.embd, s.ff)
		want[blk+"ffn_up.bias"] = u(s.ff)
		want[blk+"ffn_down.weight"] = u(s.ff, s.embd)
		want[blk+"ffn_down.bias"] = u(s.embd)
	}
	return want
}

func TestWrite(t *testing.T) {
	tests := []struct {
		arch, size string
		ctx        int
		nTensors   int
	}{
		{arch: "llama", size: "tiny", nTensors: 2 + 9*2},
		{arch: "llama", size: "tiny", ctx: 8192, nTensors: 2 + 9*2},
		{arch: "bert", size: "tiny", nTensors: 5 + 16*2},
		{arch: "llama", size: "bench", nTensors: 2 + 9*12},
		{arch: "bert", size: "bench", nTensors: 5 + 16*12},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/ctx%d", tt.arch, tt.size, tt.ctx), func(t *testing.T) {
			if tt.size == "bench" && testing.Short() {
				t.Skip("bench models are hundreds of MB")
			}
			s, err := shapeFor(tt.arch, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if tt.ctx != 0 {
				s.ctx = tt.ctx
			}
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := Write(path, Options{Arch: tt.arch, Size: tt.size, Seed: 1, ContextLength: tt.ctx}); err != nil {
				t.Fatal(err)
			}
			g := decode(t, path)
			kv := g.KV()
			checkKV(t, kv, tt.arch, s)

			want := wantTensors(tt.arch, s)
			items := g.Tensors().Items()
			if len(items) != tt.nTensors || len(want) != tt.nTensors {
				t.Fatalf("%d tensors, want %d (spec has %d)", len(items), tt.nTensors, len(want))
			}
			var params, end uint64
			for _, tensor := range items {
				shape, ok := want[tensor.Name]
				if !ok || !slices.Equal(tensor.Shape, shape) {
					t.Errorf("tensor %s shape %v, want %v (expected: %v)", tensor.Name, tensor.Shape, shape, ok)
				}
				wantF16 := s.f16 && len(shape) == 2 && tensor.Name != "token_types.weight" && tensor.Name != "position_embd.weight"
				if (tensor.Kind == typeF16) != wantF16 || tensor.Kind != typeF16 && tensor.Kind != typeF32 {
					t.Errorf("tensor %s kind %d, want F16 %v", tensor.Name, tensor.Kind, wantF16)
				}
				params += tensor.Elements()
				end = max(end, tensor.Offset+tensor.Size())
			}
			if kv.ParameterCount() != params {
				t.Errorf("general.parameter_count %d, tensors hold %d", kv.ParameterCount(), params)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if uint64(fi.Size()) != g.Tensors().Offset+end {
				t.Errorf("file is %d bytes, data ends at %d", fi.Size(), g.Tensors().Offset+end)
			}
			t.Logf("%s/%s: %d bytes, %d parameters", tt.arch, tt.size, fi.Size(), params)
			checkValues(t, path, g)
		})
	}
}

// checkKV checks the metadata llama.cpp reads.
func checkKV(t *testing.T, kv ggml.KV, arch string, s shape) {
	t.Helper()
	if kv.Architecture() != arch {
		t.Fatalf("architecture %q, want %q", kv.Architecture(), arch)
	}
	uints := map[string]uint32{
		"context_length": uint32(s.ctx), "embedding_length": uint32(s.embd),
		"block_count": uint32(s.layers), "feed_forward_length": uint32(s.ff),
		"attention.head_count": uint32(s.heads), "general.file_type": uint32(fileType(s)),
	}
	tokens := kv.Strings("tokenizer.ggml.tokens")
	types := kv.Ints("tokenizer.ggml.token_type")
	if len(tokens) != s.vocab || len(types) != s.vocab {
		t.Fatalf("%d tokens, %d token types, want %d", len(tokens), len(types), s.vocab)
	}
	special := map[int]string{}
	switch arch {
	case "llama":
		uints["attention.head_count_kv"] = uint32(s.kvHeads)
		uints["rope.dimension_count"] = uint32(s.embd / s.heads)
		uints["vocab_size"] = uint32(s.vocab)
		uints["tokenizer.ggml.bos_token_id"] = BOSToken
		uints["tokenizer.ggml.eos_token_id"] = EOSToken
		special = map[int]string{UnkToken: "<unk>", BOSToken: "<s>", PadToken: "</s>", 3: "<0x00>",
			3 + '\n': "<0x0A>", 258: "<0xFF>", ImStartToken: "<|im_start|>", ImEndToken: "<|im_end|>"}
		if kv.String("tokenizer.chat_template") != ChatMLTemplate || kv.String("tokenizer.ggml.model") != "llama" ||
			!kv.Bool("tokenizer.ggml.add_bos_token") || kv.Float("attention.layer_norm_rms_epsilon") == 0 {
			t.Error("llama tokenizer or norm keys wrong")
		}
		if len(kv.Floats("tokenizer.ggml.scores")) != s.vocab {
			t.Error("scores missing")
		}
	case "bert":
		uints["pooling_type"] = 1
		uints["tokenizer.ggml.token_type_count"] = 2
		uints["tokenizer.ggml.bos_token_id"] = BertCLSToken
		uints["tokenizer.ggml.seperator_token_id"] = BertSEPToken
		special = map[int]string{BertPadToken: "[PAD]", BertUnkToken: "[UNK]", BertCLSToken: "[CLS]",
			BertSEPToken: "[SEP]", BertMaskToken: "[MASK]"}
		if kv.Bool("attention.causal", true) || kv.Float("attention.layer_norm_epsilon") == 0 ||
			kv.String("tokenizer.ggml.model") != "bert" {
			t.Error("bert keys wrong")
		}
	}
	for key, want := range uints {
		if got := kv.Uint(key, math.MaxUint32); got != want {
			t.Errorf("%s = %d, want %d", key, got, want)
		}
	}
	for id, want := range special {
		if tokens[id] != want {
			t.Errorf("token %d is %q, want %q", id, tokens[id], want)
		}
	}
	if !strings.HasPrefix(kv.String("general.name"), "syn4pse-"+arch+"-") {
		t.Errorf("general.name %q", kv.String("general.name"))
	}
}

// checkValues reads a norm weight and a projection back: ones, and normal(0, 0.02).
func checkValues(t *testing.T, path string, g *ggml.GGML) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	read := func(name string) []float32 {
		for _, tensor := range g.Tensors().Items() {
			if tensor.Name != name {
				continue
			}
			raw := make([]byte, tensor.Size())
			if _, err := f.ReadAt(raw, int64(g.Tensors().Offset+tensor.Offset)); err != nil {
				t.Fatal(err)
			}
			out := make([]float32, tensor.Elements())
			for i := range out {
				if tensor.Kind == typeF16 {
					out[i] = halfToFloat(binary.LittleEndian.Uint16(raw[2*i:]))
				} else {
					out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
				}
			}
			return out
		}
		t.Fatalf("no tensor %s", name)
		return nil
	}
	norm := "blk.0.attn_norm.weight"
	if g.KV().Architecture() == "bert" {
		norm = "blk.0.layer_output_norm.weight"
	}
	for _, v := range read(norm) {
		if v != 1 {
			t.Fatalf("%s holds %v, want 1", norm, v)
		}
	}
	var sum, sq float64
	values := read("blk.0.attn_q.weight")
	for _, v := range values {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean, std := sum/float64(len(values)), math.Sqrt(sq/float64(len(values)))
	if math.Abs(mean) > 0.005 || math.Abs(std-weightStd) > 0.005 {
		t.Errorf("attn_q mean %.4f std %.4f, want 0 and %v", mean, std, weightStd)
	}
}

// halfToFloat decodes a normal or zero IEEE half.
func halfToFloat(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10&0x1f), float64(h&0x3ff)
	if exp == 0 {
		return sign * float32(math.Ldexp(mant, -24))
	}
	return sign * float32(math.Ldexp(1+mant/1024, exp-15))
}

func TestLlamaVocab(t *testing.T) {
	tokens, scores, types := llamaVocab(512)
	index := map[string]int{}
	for i, tok := range tokens {
		if _, dup := index[tok]; dup {
			t.Fatalf("token %q twice", tok)
		}
		index[tok] = i
	}
	for i, tok := range tokens {
		if types[i] == tokenByte && tok != fmt.Sprintf("<0x%02X>", i-3) {
			t.Errorf("byte token %d is %q", i, tok)
		}
		if types[i] != tokenNormal || utf8.RuneCountInString(tok) < 2 {
			continue
		}
		// SentencePiece only reaches a piece by merging two it has: the prefix must be there,
		// and score higher so that it merges first.
		_, last := utf8.DecodeLastRuneInString(tok)
		prefix := tok[:len(tok)-last]
		if j, ok := index[prefix]; !ok || scores[j] <= scores[i] {
			t.Errorf("piece %q: prefix %q missing or scored lower", tok, prefix)
		}
	}
	for _, word := range []string{"▁the", "▁hello", "▁world", "▁Hello", "ing", "e", "▁a", "▁H", "!"} {
		if _, ok := index[word]; !ok {
			t.Errorf("no piece %q", word)
		}
	}
}

func TestBertVocab(t *testing.T) {
	tokens, _ := bertVocab(512)
	index := map[string]bool{}
	for _, tok := range tokens {
		if index[tok] {
			t.Fatalf("token %q twice", tok)
		}
		index[tok] = true
	}
	// Greedy longest match, as llama.cpp's WordPiece does, must cover every lowercase word.
	for _, word := range []string{"hello", "world", "zyxw", "running", "42", "q"} {
		rest := "▁" + word
		for rest != "" {
			n := len(rest)
			for n > 0 && !index[rest[:n]] {
				n--
			}
			if n == 0 {
				t.Fatalf("%q: no piece matches %q", word, rest)
			}
			rest = rest[n:]
		}
	}
	if !index["▁the"] || !index["ing"] || !index["▁."] {
		t.Error("common pieces missing")
	}
}

func TestDeterministicAndAtomic(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf"), filepath.Join(dir, "c.gguf")
	for path, seed := range map[string]int64{a: 7, b: 7, c: 8} {
		if err := Write(path, Options{Seed: seed}); err != nil {
			t.Fatal(err)
		}
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	cb, _ := os.ReadFile(c)
	if !bytes.Equal(ab, bb) || bytes.Equal(ab, cb) {
		t.Fatal("same seed must give the same file, another seed another")
	}

	// Overwriting replaces the file whole, even a bigger one, and leaves no temp file behind.
	big := filepath.Join(dir, "big.gguf")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 4*len(cb)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{a, big} {
		if err := Write(path, Options{Seed: 8}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, cb) {
			t.Fatalf("rewrite of %s did not replace the file", path)
		}
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", fi.Mode(), err)
	}

	// Failures leave the existing file as it was.
	for _, opts := range []Options{{Arch: "gpt9"}, {Size: "huge"}, {ContextLength: -1}} {
		if err := Write(a, opts); err == nil {
			t.Errorf("%+v accepted", opts)
		}
	}
	if got, _ := os.ReadFile(a); !bytes.Equal(got, cb) {
		t.Fatal("a failed write changed the file")
	}
	if err := Write(filepath.Join(dir, "no", "such", "dir.gguf"), Options{}); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Fatalf("%d files in the directory, want 4", len(entries))
	}
}

func TestChatTemplate(t *testing.T) {
	const custom = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
	for _, tt := range []struct {
		arch, template, want string
	}{
		{"llama", "", ChatMLTemplate},
		{"llama", custom, custom},
		{"bert", "", ""},
	} {
		path := filepath.Join(t.TempDir(), "m.gguf")
		if err := Write(path, Options{Arch: tt.arch, ChatTemplate: tt.template}); err != nil {
			t.Fatal(err)
		}
		if got := decode(t, path).KV().ChatTemplate(); got != tt.want {
			t.Errorf("%s with %q: template %q, want %q", tt.arch, tt.template, got, tt.want)
		}
	}
}

// failingWriter fails after n bytes.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, io.ErrShortWrite
	}
	w.n -= len(p)
	return len(p), nil
}

func TestRandomTensorWriteTo(t *testing.T) {
	for _, tt := range []struct {
		n   uint64
		f16 bool
	}{{0, false}, {1, true}, {16384, false}, {16385, false}, {100000, true}} {
		var buf bytes.Buffer
		rt := &randomTensor{n: tt.n, f16: tt.f16, fill: random, seed: 1}
		n, err := rt.WriteTo(&buf)
		width := uint64(4)
		if tt.f16 {
			width = 2
		}
		if err != nil || uint64(n) != tt.n*width || uint64(buf.Len()) != tt.n*width {
			t.Errorf("%d values (f16 %v): wrote %d (%d buffered), %v", tt.n, tt.f16, n, buf.Len(), err)
		}
	}
	rt := &randomTensor{n: 100000, fill: random, seed: 1}
	if n, err := rt.WriteTo(&failingWriter{n: 1000}); err == nil || n != 1000 {
		t.Errorf("failing writer: %d, %v", n, err)
	}
}

func TestFloat16(t *testing.T) {
	for _, tt := range []struct {
		in   float32
		want uint16
	}{{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {0.5, 0x3800}, {65504, 0x7bff}, {1e6, 0x7c00}, {6e-8, 0x0001}, {1e-9, 0},
		{0.02, 0x251f}, {1.0009766, 0x3c01}, {1.00048828125, 0x3c00}, {float32(math.Ldexp(1, -14)), 0x0400}} {
		if got := float16(tt.in); got != tt.want {
			t.Errorf("float16(%v) = %#04x, want %#04x", tt.in, got, tt.want)
		}
		if tt.want < 0x7c00 && math.Abs(float64(halfToFloat(tt.want)-tt.in)) > math.Abs(float64(tt.in))/1000+1e-7 {
			t.Errorf("halfToFloat(%#04x) = %v, want about %v", tt.want, halfToFloat(tt.want), tt.in)
		}
	}
}

func TestWriteAudioProjector(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := WriteAudioProjector(path, 1); err != nil {
		t.Fatal(err)
	}
	g := decode(t, path)
	kv := g.KV()
	if kv.String("general.architecture") != "clip" || kv.String("projector_type") != "qwen2a" || !kv.Bool("has_audio_encoder") {
		t.Fatalf("metadata: arch %q, projector %q", kv.String("general.architecture"), kv.String("projector_type"))
	}
	llm, _ := shapeFor("llama", "tiny")
	shapes := map[string][]uint64{}
	for _, tensor := range g.Tensors().Items() {
		shapes[tensor.Name] = tensor.Shape
	}
	// The projection's output is the LLM's embedding width, which mtmd checks on load.
	if got := shapes["mm.a.fc.weight"]; !slices.Equal(got, []uint64{audioEmbd, uint64(llm.embd)}) {
		t.Fatalf("mm.a.fc.weight shape %v", got)
	}
	if got := shapes["a.position_embd.weight"]; !slices.Equal(got, []uint64{audioEmbd, audioPositions}) {
		t.Fatalf("a.position_embd.weight shape %v", got)
	}
}

func TestWriteVisionProjector(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := WriteVisionProjector(path, 1); err != nil {
		t.Fatal(err)
	}
	g := decode(t, path)
	kv := g.KV()
	if kv.String("general.architecture") != "clip" || kv.String("projector_type") != "mlp" || !kv.Bool("has_vision_encoder") {
		t.Fatalf("metadata: arch %q, projector %q", kv.String("general.architecture"), kv.String("projector_type"))
	}
	llm, _ := shapeFor("llama", "tiny")
	shapes := map[string][]uint64{}
	for _, tensor := range g.Tensors().Items() {
		shapes[tensor.Name] = tensor.Shape
	}
	// The projection's output is the LLM's embedding width (mtmd checks it on load); one
	// position embedding a patch.
	for name, want := range map[string][]uint64{
		"mm.2.weight":            {visionHidden, uint64(llm.embd)},
		"v.position_embd.weight": {visionEmbd, VisionImageTokens},
		"v.patch_embd.weight":    {visionPatch, visionPatch, 3, visionEmbd},
	} {
		if got := shapes[name]; !slices.Equal(got, want) {
			t.Errorf("%s shape %v, want %v", name, got, want)
		}
	}
}

func TestWriteQwen2VL(t *testing.T) {
	model, projector, err := WriteQwen2VL(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	llm, _ := shapeFor("llama", "tiny")
	kv := decode(t, model).KV()
	// M-RoPE's sections (time, height, width, unused) share out each head's rotary pairs.
	sections := kv.Ints("rope.dimension_sections")
	var pairs int32
	for _, n := range sections {
		pairs += n
	}
	if kv.Architecture() != "qwen2vl" || len(sections) != 4 || int(pairs) != llm.embd/llm.heads/2 {
		t.Fatalf("architecture %q, rope sections %v, want qwen2vl and %d pairs", kv.Architecture(), sections, llm.embd/llm.heads/2)
	}
	g := decode(t, projector)
	if kv := g.KV(); kv.String("projector_type") != "qwen2vl_merger" || !kv.Bool("has_vision_encoder") {
		t.Fatalf("projector type %q", kv.String("projector_type"))
	}
	shapes := map[string][]uint64{}
	for _, tensor := range g.Tensors().Items() {
		shapes[tensor.Name] = tensor.Shape
	}
	// The merger takes 2×2 patches and puts out the LLM's embedding width (mtmd checks it).
	for name, want := range map[string][]uint64{
		"mm.0.weight":           {qwen2vlMergerIn, qwen2vlMergerIn},
		"mm.2.weight":           {qwen2vlMergerIn, uint64(llm.embd)},
		"v.patch_embd.weight.1": {qwen2vlPatch, qwen2vlPatch, 3, qwen2vlEmbd},
	} {
		if got := shapes[name]; !slices.Equal(got, want) {
			t.Errorf("%s shape %v, want %v", name, got, want)
		}
	}
}
