package models_test

import (
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

// gpuCatalog is a manager over the fake engine (engine/enginetest) with generated model files,
// whose GPU budgets are given as numbers: the manager accounts for the models as a node with
// those GPUs would, which is all these tests look at.
func gpuCatalog(t *testing.T, opts models.Options, decls_ ...placed) (*models.Manager, int64) {
	t.Helper()
	dir := t.TempDir()
	var decls []models.Decl
	var size int64
	for i, p := range decls_ {
		path := filepath.Join(dir, p.name+".gguf")
		if err := tinygguf.Write(path, tinygguf.Options{Seed: int64(i)}); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		size = fi.Size()
		decls = append(decls, models.Decl{Name: p.name, Modality: "llm", Engine: engine.DefaultEngine, Path: path, Enabled: true,
			Options: engine.LoadOptions{Threads: 1, BatchSize: 512, Parallel: 1, ContextLength: 256, FlashAttention: "auto",
				GPULayers: p.gpuLayers, MainGPU: p.mainGPU}})
	}
	var registry engine.Registry
	registry.RegisterLLM(&enginetest.Engine{})
	m := models.New(&registry, decls, opts)
	t.Cleanup(func() { m.Close() })
	return m, size
}

func TestGPUBudgetIsSeparateFromRAM(t *testing.T) {
	// Every generated file has the same size; sizes are known after the first catalog.
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
