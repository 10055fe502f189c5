package models

import (
	"fmt"

	"github.com/ekisa-team/syn4pse/engine"
)

// Memory is counted in pools: RAM (pool 0) and each GPU (pool 1 + its index), each with its own
// budget, so a model offloaded to a GPU takes room there and not in RAM. A model's footprint is
// its file size (the weights) plus its KV cache (context × parallel × the bytes per token its
// GGUF header gives, kvcache.go), both placed as llama.cpp places a model's layers:
//   - no GPU, or gpu_layers = 0: all in RAM;
//   - main_gpu = N: all on GPU N;
//   - otherwise spread over the GPUs in proportion to their budgets (llama.cpp's layer split
//     divides the layers by the devices' memory).

// The parallel a model gets when its declaration leaves it unset (auto): a GPU decodes more
// sequences at once for little extra time per step; a CPU's step time grows with each one.
const (
	autoParallelCPU = 4
	autoParallelGPU = 8
)

// footprint is what e takes in each pool when loaded.
func (m *Manager) footprint(e *entry) []int64 {
	return m.place(e.decl.Options, e.memory())
}

// memory is what e takes when loaded, in all pools together.
func (e *entry) memory() int64 { return e.memoryWith(e.decl.Options.Parallel) }

// memoryWith is what e takes when loaded with parallel sequences.
func (e *entry) memoryWith(parallel int) int64 {
	return e.size + e.kv.bytes(e.decl.Options.ContextLength, parallel)
}

// place splits n bytes of a model loaded with opts over the pools.
func (m *Manager) place(opts engine.LoadOptions, n int64) []int64 {
	fp := make([]int64, 1+len(m.opts.GPUMemory))
	gpus := m.opts.GPUMemory
	switch {
	case len(gpus) == 0 || opts.GPULayers == 0:
		fp[0] = n
	case opts.MainGPU >= 0 && opts.MainGPU < len(gpus):
		fp[1+opts.MainGPU] = n
	default:
		var total int64
		for _, b := range gpus {
			total += b
		}
		if total <= 0 {
			fp[0] = n
			break
		}
		left := n
		for i, b := range gpus {
			share := int64(float64(n) * float64(b) / float64(total))
			if i == len(gpus)-1 {
				share = left
			}
			fp[1+i] = share
			left -= share
		}
	}
	return fp
}

// onGPU says whether a model loaded with opts has its layers, and so its KV cache, on a GPU.
func (m *Manager) onGPU(opts engine.LoadOptions) bool { return m.place(opts, 1)[0] == 0 }

// resolveParallel is the parallel e loads with: the declared one, or for auto (0)
// autoParallelGPU when its layers go to a GPU and autoParallelCPU in RAM, halved (down to 1)
// until its weights and KV cache fit the budget of every pool they take.
func (m *Manager) resolveParallel(e *entry) int {
	if p := e.decl.Options.Parallel; p > 0 {
		return p
	}
	p := autoParallelCPU
	if m.onGPU(e.decl.Options) {
		p = autoParallelGPU
	}
	for p > 1 && !m.withinBudgets(m.place(e.decl.Options, e.memoryWith(p))) {
		p /= 2
	}
	return p
}

// withinBudgets says whether a footprint fits each pool's whole budget.
func (m *Manager) withinBudgets(fp []int64) bool {
	for i, n := range fp {
		if b := m.budget(i); n > 0 && b > 0 && n > b {
			return false
		}
	}
	return true
}

// budget is pool i's bound; 0 or less means none.
func (m *Manager) budget(pool int) int64 {
	if pool == 0 {
		return m.opts.MaxMemory
	}
	return m.opts.GPUMemory[pool-1]
}

// poolName names pool i for messages and logs.
func poolName(pool int) string {
	if pool == 0 {
		return "RAM (models.max_memory)"
	}
	return fmt.Sprintf("GPU %d", pool-1)
}

// usedLocked is what the loaded and loading models take in each pool.
func (m *Manager) usedLocked() []int64 {
	used := make([]int64, 1+len(m.opts.GPUMemory))
	for _, e := range m.entries {
		if e.model != nil || e.loading != nil {
			for i, n := range m.footprint(e) {
				used[i] += n
			}
		}
	}
	return used
}

// overLocked is the first pool that loading e would take past its budget, or -1 when e fits.
func (m *Manager) overLocked(e *entry) int {
	used := m.usedLocked()
	for i, n := range m.footprint(e) {
		if b := m.budget(i); n > 0 && b > 0 && used[i]+n > b {
			return i
		}
	}
	return -1
}
