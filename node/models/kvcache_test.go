package models

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ollama/ollama/fs/ggml"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// writeHeader writes a GGUF file of metadata only (no tensors), for shapes tinygguf does not
// generate.
func writeHeader(t *testing.T, kv ggml.KV) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "header.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ggml.WriteGGUF(f, kv, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeTiny writes a generated model and returns its path.
func writeTiny(t *testing.T, opts tinygguf.Options) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := tinygguf.Write(path, opts); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadKVCache(t *testing.T) {
	// A llama-like header: 4 layers, n_embd 256, 8 heads (head size 32).
	base := func(extra ggml.KV) ggml.KV {
		kv := ggml.KV{"general.architecture": "llama", "llama.block_count": uint32(4),
			"llama.embedding_length": uint32(256), "llama.attention.head_count": uint32(8),
			"llama.context_length": uint32(8192)}
		for k, v := range extra {
			kv[k] = v
		}
		return kv
	}
	notGGUF := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notGGUF, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		path          string
		bytesPerToken int64
		trainContext  int
		wantErr       bool
	}{
		// tinygguf's tiny llama: 2 layers × 2 KV heads × (16 + 16) × 2 bytes.
		{name: "tiny llama", path: writeTiny(t, tinygguf.Options{}), bytesPerToken: 2 * 2 * 32 * 2, trainContext: 2048},
		// A BERT embedder's attention is not causal: no cache.
		{name: "bert", path: writeTiny(t, tinygguf.Options{Arch: "bert"}), bytesPerToken: 0, trainContext: 512},
		// No head_count_kv: every head keeps K and V (4 × 8 × 64 × 2).
		{name: "no GQA", path: writeHeader(t, base(nil)), bytesPerToken: 4 * 8 * 64 * 2, trainContext: 8192},
		{name: "key and value lengths", path: writeHeader(t, base(ggml.KV{"llama.attention.head_count_kv": uint32(2),
			"llama.attention.key_length": uint32(128), "llama.attention.value_length": uint32(64)})),
			bytesPerToken: 4 * 2 * (128 + 64) * 2, trainContext: 8192},
		// One KV head count per layer; a layer with none (recurrent) keeps no cache.
		{name: "per-layer KV heads", path: writeHeader(t, base(ggml.KV{"llama.attention.head_count_kv": []int32{2, 0, 4, 2}})),
			bytesPerToken: (2 + 0 + 4 + 2) * 64 * 2, trainContext: 8192},
		{name: "per-layer array of the wrong length", path: writeHeader(t, base(ggml.KV{"llama.attention.head_count_kv": []uint32{2, 4}})),
			bytesPerToken: 4 * 8 * 64 * 2, trainContext: 8192}, // taken as absent: head_count
		{name: "no block count", path: writeHeader(t, ggml.KV{"general.architecture": "llama", "llama.embedding_length": uint32(256)}), wantErr: true},
		{name: "no heads", path: writeHeader(t, ggml.KV{"general.architecture": "llama", "llama.block_count": uint32(4)}), wantErr: true},
		{name: "not GGUF", path: notGGUF, wantErr: true},
		{name: "missing", path: filepath.Join(t.TempDir(), "none.gguf"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := readKVCache(tt.path)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("read %+v, want an error", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.bytesPerToken != tt.bytesPerToken || c.trainContext != tt.trainContext {
				t.Fatalf("got %d bytes per token, train context %d; want %d, %d", c.bytesPerToken, c.trainContext, tt.bytesPerToken, tt.trainContext)
			}
		})
	}
}

func TestKVCacheBytes(t *testing.T) {
	tests := []struct {
		name                           string
		trainContext, configured, seqs int
		want                           int64
	}{
		{name: "configured", trainContext: 2048, configured: 1024, seqs: 4, want: 1024 * 4 * 100},
		{name: "default: the training context", trainContext: 2048, seqs: 2, want: 2048 * 2 * 100},
		{name: "default: capped", trainContext: 131072, seqs: 1, want: 4096 * 100},
		{name: "default: unknown training context", seqs: 1, want: 4096 * 100},
		{name: "rounded up as llama.cpp does", configured: 300, seqs: 2, want: 512 * 2 * 100},
		{name: "parallel 0 counts one", configured: 256, want: 256 * 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kvCache{bytesPerToken: 100, trainContext: tt.trainContext}
			if got := c.bytes(tt.configured, tt.seqs); got != tt.want {
				t.Fatalf("bytes(%d, %d) = %d, want %d", tt.configured, tt.seqs, got, tt.want)
			}
		})
	}
}
