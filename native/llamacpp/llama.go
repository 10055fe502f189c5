package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
#include "ggml-backend.h"

extern void synLog(int level, char *text, void *user_data);
static void syn_log_set(void) { llama_log_set((ggml_log_callback)synLog, NULL); }
*/
import "C"

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"unsafe"

	// The binding's packages compile llama.cpp and ggml; linking them provides every symbol
	// this package calls.
	_ "github.com/ollama/ollama/llama"
)

var logOnce sync.Once

// initLog routes llama.cpp's and ggml's log lines to slog (errors as errors, everything else at
// debug level, so a normal node stays quiet) and initialises llama.cpp, once per process.
func initLog() {
	logOnce.Do(func() {
		C.syn_log_set()
		C.llama_backend_init()
	})
}

// Init makes llama.cpp ready: it loads the native backends with default options unless
// LoadBackends ran before. Safe to call many times.
func Init() {
	if _, err := LoadBackends(BackendOptions{}); err != nil {
		slog.Error("native backends", "error", err)
	}
}

// logLine collects llama.cpp's log fragments until a newline, since it logs partial lines.
var logLine struct {
	sync.Mutex
	buf   strings.Builder
	level slog.Level
}

//export synLog
func synLog(level C.int, text *C.char, _ unsafe.Pointer) {
	s := C.GoString(text)
	logLine.Lock()
	defer logLine.Unlock()
	switch level {
	case C.GGML_LOG_LEVEL_CONT:
		// continues the previous line at its level
	case C.GGML_LOG_LEVEL_ERROR:
		logLine.level = slog.LevelError
		if aborting.Load() > 0 {
			// "failed to compute graph" and the like, for a decode we stopped on purpose.
			logLine.level = slog.LevelDebug
		}
	case C.GGML_LOG_LEVEL_WARN:
		// llama.cpp's warnings are mostly notes ("n_ctx_seq < n_ctx_train"); what matters to a
		// user (a model that fails to load) the node reports itself.
		logLine.level = slog.LevelDebug
	default:
		logLine.level = slog.LevelDebug - 4
		if level == C.GGML_LOG_LEVEL_INFO {
			logLine.level = slog.LevelDebug
		}
	}
	logLine.buf.WriteString(s)
	if !strings.HasSuffix(s, "\n") {
		return
	}
	line := strings.TrimRight(logLine.buf.String(), "\n")
	logLine.buf.Reset()
	if line != "" {
		slog.Log(context.Background(), logLine.level, line, "component", "llama.cpp")
	}
}

// SystemInfo is llama.cpp's description of the compiled CPU features and backends,
// e.g. "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ...".
func SystemInfo() string {
	Init()
	return strings.TrimSpace(C.GoString(C.llama_print_system_info()))
}

// Device describes one compute device ggml found.
type Device struct {
	Name        string
	Description string
	// Kind is "cpu", "gpu", "igpu" or "accel".
	Kind        string
	MemoryFree  uint64
	MemoryTotal uint64
}

// Devices lists the compute devices of every registered ggml backend, in ggml's order of
// preference, with one CPU device: the one llama.cpp computes on.
func Devices() []Device {
	Init()
	return devices()
}

// gpuCount is the number of GPU devices (discrete or integrated), as llama.cpp numbers them.
func gpuCount() int {
	n := 0
	for _, d := range Devices() {
		if d.GPU() {
			n++
		}
	}
	return n
}

// GPU reports whether d is a GPU, discrete or integrated: the devices gpu_layers and main_gpu
// refer to.
func (d Device) GPU() bool { return d.Kind == "gpu" || d.Kind == "igpu" }

// devices is Devices for callers that hold the backends' lock.
func devices() []Device {
	n := int(C.ggml_backend_dev_count())
	devices := make([]Device, 0, n)
	cpuSeen := false
	for i := range n {
		dev := C.ggml_backend_dev_get(C.size_t(i))
		var free, total C.size_t
		C.ggml_backend_dev_memory(dev, &free, &total)
		kind := "cpu"
		switch C.ggml_backend_dev_type(dev) {
		case C.GGML_BACKEND_DEVICE_TYPE_CPU:
			if cpuSeen {
				// The builtin CPU device behind a loaded variant: llama.cpp uses only the first.
				continue
			}
			cpuSeen = true
		case C.GGML_BACKEND_DEVICE_TYPE_GPU:
			kind = "gpu"
		case C.GGML_BACKEND_DEVICE_TYPE_IGPU:
			kind = "igpu"
		case C.GGML_BACKEND_DEVICE_TYPE_ACCEL:
			kind = "accel"
		}
		devices = append(devices, Device{
			Name:        C.GoString(C.ggml_backend_dev_name(dev)),
			Description: C.GoString(C.ggml_backend_dev_description(dev)),
			Kind:        kind,
			MemoryFree:  uint64(free),
			MemoryTotal: uint64(total),
		})
	}
	return devices
}
