package node

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"

	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// loadBackends loads the native backends the config asks for and says in the log which CPU code
// and which devices the node runs on.
func loadBackends(cfg *config.Config) (*llamacpp.Backends, error) {
	opts := llamacpp.BackendOptions{CPUVariant: cfg.Engine.CPUVariant, Require: llamacpp.RequiredGPUBackends()}
	if cfg.Engine.LibraryPath != "" {
		opts.LibraryPath = []string{cfg.Engine.LibraryPath}
	}
	b, err := llamacpp.LoadBackends(opts)
	if err != nil {
		return nil, fmt.Errorf("%w (engine.cpu_variant, engine.library_path / SYN4PSE_ENGINE_LIBRARY_PATH)", err)
	}
	var devices []string
	for _, d := range b.Devices {
		devices = append(devices, d.Name)
	}
	slog.Info("native backends", "cpu_variant", b.CPUVariant, "library", b.CPUPath, "gpu", b.GPU, "devices", strings.Join(devices, ","))
	if b.CPUVariant == llamacpp.Builtin && (cfg.Engine.CPUVariant == "auto" || cfg.Engine.CPUVariant == "") {
		slog.Warn("no CPU variant library found: running ggml's generic CPU code, 8-45x slower; build the libraries with `task build-third-party` (they go in bin/lib) or set engine.library_path",
			"searched", strings.Join(b.LibraryPath, ","))
	}
	return b, nil
}

// freeMemoryStep is the granularity of the free GPU memory a node reports: the capability is
// republished whenever its bytes change, and free memory moves by a few MiB all the time.
const freeMemoryStep = 256 << 20

// hardware describes this machine for status and for the capabilities peers route by; GPU
// memory is read anew on each call, in steps of freeMemoryStep. The CPU device carries no
// memory figure: RAM is memory_bytes (ggml reports the CPU's free memory as its total).
func hardware(b *llamacpp.Backends) *pb.Hardware {
	hw := &pb.Hardware{CpuCores: int32(runtime.NumCPU()), MemoryBytes: totalMemory(), CpuVariant: b.CPUVariant,
		Accelerators: b.GPU}
	for _, d := range llamacpp.Devices() {
		dev := &pb.Device{Name: d.Name, Description: d.Description, Kind: d.Kind}
		if d.GPU() {
			dev.MemoryTotalBytes = int64(d.MemoryTotal)
			dev.MemoryFreeBytes = int64(d.MemoryFree) / freeMemoryStep * freeMemoryStep
		}
		hw.Devices = append(hw.Devices, dev)
	}
	return hw
}

// largestGPU is the memory of a node's largest GPU, 0 when it has none.
func largestGPU(hw *pb.Hardware) int64 {
	var largest int64
	for _, d := range hw.GetDevices() {
		if d.GetKind() == "gpu" || d.GetKind() == "igpu" {
			largest = max(largest, d.GetMemoryTotalBytes())
		}
	}
	return largest
}

// gpuBudgets is the memory models may take on each GPU, in llama.cpp's numbering: 90% of the
// device's memory, the rest left to KV caches and compute buffers.
func gpuBudgets(b *llamacpp.Backends) []int64 {
	var budgets []int64
	for _, d := range b.Devices {
		if d.GPU() {
			budgets = append(budgets, int64(d.MemoryTotal/10*9))
		}
	}
	return budgets
}
