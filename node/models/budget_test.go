package models_test

import (
	"cmp"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/enginetest"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node/models"
)

// placed declares a generated model with its GPU placement.
type placed struct {
	name      string
	gpuLayers int
	mainGPU   int
}

// gpuCatalog is a manager over the fake engine (engine/enginetest) with generated model files
// (one sequence of 256 tokens each), whose GPU budgets are given as numbers: the manager
// accounts for the models as a node with those GPUs would, which is all these tests look at.
// It returns the memory one model takes loaded (file and KV cache), the same for all.
func gpuCatalog(t *testing.T, opts models.Options, decls_ ...placed) (*models.Manager, int64) {
	t.Helper()
	dir := t.TempDir()
	var decls []models.Decl
	for i, p := range decls_ {
		path := filepath.Join(dir, p.name+".gguf")
		if err := tinygguf.Write(path, tinygguf.Options{Seed: int64(i)}); err != nil {
			t.Fatal(err)
		}
		decls = append(decls, models.Decl{Name: p.name, Modality: "llm", Engine: engine.DefaultEngine, Path: path, Enabled: true,
			Options: engine.LoadOptions{Threads: 1, BatchSize: 512, Parallel: 1, ContextLength: 256, FlashAttention: "auto",
				GPULayers: p.gpuLayers, MainGPU: p.mainGPU}})
	}
	m := newCatalog(t, opts, decls...)
	s, _ := m.Status(decls_[0].name)
	return m, s.MemoryBytes
}

// newCatalog is a manager of decls over the fake engine, closed when the test ends.
func newCatalog(t *testing.T, opts models.Options, decls ...models.Decl) *models.Manager {
	t.Helper()
	var registry engine.Registry
	registry.RegisterLLM(&enginetest.Engine{})
	m := models.New(&registry, decls, opts)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestGPUBudgetIsSeparateFromRAM(t *testing.T) {
	// Every generated model takes the same memory, known after the first catalog.
	_, size := gpuCatalog(t, models.Options{}, placed{name: "probe"})
	room := size + size/2 // one model per pool
	m, _ := gpuCatalog(t, models.Options{KeepAlive: time.Hour, MaxMemory: room, GPUMemory: []int64{room}},
		placed{name: "gpu1", gpuLayers: -1, mainGPU: -1},
		placed{name: "cpu", gpuLayers: 0, mainGPU: -1},
		placed{name: "gpu2", gpuLayers: -1, mainGPU: 0})
	for _, name := range []string{"gpu1", "cpu"} {
		if err := m.Load(t.Context(), name, nil); err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
	}
	// A model on the GPU and one in RAM fit together: each pool holds one.
	if state(t, m, "gpu1") != models.StateLoaded || state(t, m, "cpu") != models.StateLoaded {
		t.Fatalf("gpu1 %v, cpu %v: both should be loaded", state(t, m, "gpu1"), state(t, m, "cpu"))
	}
	// A second GPU model evicts the first GPU model, not the one in RAM (used more recently).
	if err := m.Load(t.Context(), "gpu2", nil); err != nil {
		t.Fatal(err)
	}
	if state(t, m, "gpu1") != models.StateAvailable || state(t, m, "cpu") != models.StateLoaded || state(t, m, "gpu2") != models.StateLoaded {
		t.Fatalf("gpu1 %v, cpu %v, gpu2 %v: want gpu1 evicted", state(t, m, "gpu1"), state(t, m, "cpu"), state(t, m, "gpu2"))
	}
}

func TestGPUBudgetSpreadsOverGPUs(t *testing.T) {
	_, size := gpuCatalog(t, models.Options{}, placed{name: "probe"})
	// Two GPUs with half a model's room each hold one spread model, but not a model pinned to
	// one of them.
	half := size/2 + 1024
	m, _ := gpuCatalog(t, models.Options{KeepAlive: time.Hour, GPUMemory: []int64{half, half}},
		placed{name: "spread", gpuLayers: -1, mainGPU: -1},
		placed{name: "pinned", gpuLayers: -1, mainGPU: 1})
	if err := m.Load(t.Context(), "spread", nil); err != nil {
		t.Fatalf("a model spread over two GPUs that hold half each: %v", err)
	}
	if err := m.Unload("spread"); err != nil {
		t.Fatal(err)
	}
	err := m.Load(t.Context(), "pinned", nil)
	if !errors.Is(err, models.ErrUnavailable) || !strings.Contains(err.Error(), "of GPU 1, whose budget is") {
		t.Fatalf("a model pinned to a GPU too small for it: %v", err)
	}
}

func TestParallelAndKVCacheInTheBudget(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.gguf")
	if err := tinygguf.Write(model, tinygguf.Options{}); err != nil {
		t.Fatal(err)
	}
	// A file the GGUF header reader cannot read: the fake engine loads it all the same.
	notGGUF := filepath.Join(dir, "blob.bin")
	if err := os.WriteFile(notGGUF, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(model)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	// tinygguf's tiny llama keeps 2 layers × 2 KV heads × (16 + 16) F16 values per token: 256
	// bytes, so a sequence of 256 tokens takes 64 KiB.
	const perSeq = 256 * 256
	room := func(seqs int) int64 { return size + int64(seqs)*perSeq + perSeq/2 } // not one more
	const oneGPU = 1 << 30
	tests := []struct {
		name      string
		path      string
		parallel  int
		gpuLayers int
		opts      models.Options
		want      int // the parallel loaded; 0: the load fails for memory
		wantMem   int64
	}{
		{name: "auto on CPU", parallel: 0, want: 4},
		{name: "auto on GPU", gpuLayers: -1, opts: models.Options{GPUMemory: []int64{oneGPU}}, want: 8},
		{name: "auto on a GPU node with gpu_layers 0", opts: models.Options{GPUMemory: []int64{oneGPU}}, want: 4},
		{name: "auto lowered to fit RAM", opts: models.Options{MaxMemory: room(2)}, want: 2},
		{name: "auto lowered to fit the GPU, not RAM", gpuLayers: -1, opts: models.Options{MaxMemory: room(0), GPUMemory: []int64{room(4)}}, want: 4},
		{name: "KV cache counted: the file alone fits", opts: models.Options{MaxMemory: room(0)}, want: 0},
		{name: "explicit kept", parallel: 3, opts: models.Options{MaxMemory: room(3)}, want: 3},
		{name: "explicit not lowered", parallel: 4, opts: models.Options{MaxMemory: room(2)}, want: 0},
		{name: "unreadable header: the file only", path: notGGUF, opts: models.Options{MaxMemory: 4097}, want: 4, wantMem: 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := cmp.Or(tt.path, model)
			tt.opts.KeepAlive = time.Hour // stay loaded for Status to describe it
			m := newCatalog(t, tt.opts, models.Decl{Name: "m", Modality: "llm", Engine: engine.DefaultEngine, Path: path, Enabled: true,
				Options: engine.LoadOptions{Threads: 1, ContextLength: 256, Parallel: tt.parallel, GPULayers: tt.gpuLayers, MainGPU: -1}})
			err := m.Load(t.Context(), "m", nil)
			if tt.want == 0 {
				if !errors.Is(err, models.ErrUnavailable) || !strings.Contains(err.Error(), "whose budget is") {
					t.Fatalf("load: %v, want a memory error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s, _ := m.Status("m")
			wantMem := cmp.Or(tt.wantMem, size+int64(tt.want)*perSeq)
			if s.Info.Parallel != tt.want || s.MemoryBytes != wantMem {
				t.Fatalf("loaded with parallel %d taking %d bytes; want %d, %d", s.Info.Parallel, s.MemoryBytes, tt.want, wantMem)
			}
		})
	}
}
