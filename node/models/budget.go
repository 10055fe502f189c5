package models

import "fmt"

// Memory is counted in pools: RAM (pool 0) and each GPU (pool 1 + its index), each with its own
// budget, so a model offloaded to a GPU takes room there and not in RAM. A model's footprint is
// estimated by its file size, as llama.cpp places its weights:
//   - no GPU, or gpu_layers = 0: all in RAM;
//   - main_gpu = N: all on GPU N;
//   - otherwise spread over the GPUs in proportion to their budgets (llama.cpp's layer split
//     divides the layers by the devices' memory).

// footprint is what e takes in each pool when loaded.
func (m *Manager) footprint(e *entry) []int64 {
	fp := make([]int64, 1+len(m.opts.GPUMemory))
	gpus := m.opts.GPUMemory
	switch {
	case len(gpus) == 0 || e.decl.Options.GPULayers == 0:
		fp[0] = e.size
	case e.decl.Options.MainGPU >= 0 && e.decl.Options.MainGPU < len(gpus):
		fp[1+e.decl.Options.MainGPU] = e.size
	default:
		var total int64
		for _, b := range gpus {
			total += b
		}
		if total <= 0 {
			fp[0] = e.size
			break
		}
		left := e.size
		for i, b := range gpus {
			share := int64(float64(e.size) * float64(b) / float64(total))
			if i == len(gpus)-1 {
				share = left
			}
			fp[1+i] = share
			left -= share
		}
	}
	return fp
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
		if e.llm != nil || e.loading != nil {
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
