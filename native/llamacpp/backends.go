package llamacpp

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include "ggml-backend.h"

// syn_backend_score opens a backend library on its own, asks its ggml_backend_score (0 means
// "this CPU or system cannot run me") and closes it again. Returns -1 when the library does not
// open (the reason in *err, to free) and -2 when it has no score function.
static int syn_backend_score(const char *path, char **err) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		*err = strdup(e ? e : "dlopen failed");
		return -1;
	}
	int (*score)(void) = (int (*)(void)) dlsym(h, "ggml_backend_score");
	int s = score ? score() : -2;
	dlclose(h);
	return s;
}

// syn_os_vector_state says which vector registers the operating system saves and restores:
// 2 AVX-512 (opmask and ZMM state), 1 AVX only, 0 neither, -1 not an x86-64 CPU. ggml's scores
// read CPUID alone, which a hypervisor may advertise while the OS leaves the state disabled;
// running AVX-512 code there dies with SIGILL.
#if defined(__x86_64__)
#include <cpuid.h>
static int syn_os_vector_state(void) {
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; // no OSXSAVE
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	if ((lo & 0x6) != 0x6) return 0;   // SSE and AVX (YMM) state
	if ((lo & 0xe0) != 0xe0) return 1; // opmask, ZMM_Hi256, Hi16_ZMM
	return 2;
}
#else
static int syn_os_vector_state(void) { return -1; }
#endif
*/
import "C"

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// Builtin is the CPU variant compiled into the binary by cgo: portable and generic (no SIMD
// beyond the architecture's baseline), used when no variant library is found or when asked for.
const Builtin = "builtin"

// GPUBackends are the accelerator backends the node looks for, in the order it loads them.
var GPUBackends = []string{"cuda", "hip", "vulkan", "metal"}

// BackendOptions says where the native backend libraries are and which CPU variant to use.
type BackendOptions struct {
	// LibraryPath lists the folders searched for libggml-*.so, in order; empty means
	// DefaultLibraryPath.
	LibraryPath []string
	// CPUVariant is "auto" or "" (the best variant this CPU runs), Builtin, or a variant's name
	// ("haswell", "sapphirerapids"...).
	CPUVariant string
	// Require names GPU backends (from GPUBackends) this build expects: loading fails when their
	// library is missing, instead of running on the CPU by surprise.
	Require []string
}

// CPUVariantFile is one CPU backend library found, with ggml's score for this CPU.
type CPUVariantFile struct {
	Name string
	Path string
	// Score is ggml_backend_score: 0 when this CPU lacks a feature the variant needs; higher
	// is better. -1 when the file did not open.
	Score int
	// Err says why the file did not open.
	Err string
}

// Backends reports what LoadBackends loaded.
type Backends struct {
	// LibraryPath is the folders that were searched.
	LibraryPath []string
	// CPUVariant is the CPU backend in use: a variant's name or Builtin.
	CPUVariant string
	// CPUPath is the variant's file; empty for Builtin.
	CPUPath string
	// CPUVariants is every CPU variant found, best score first.
	CPUVariants []CPUVariantFile
	// GPU names the accelerator backends loaded (e.g. "CUDA"), with the devices in Devices.
	GPU []string
	// Devices is every compute device, in ggml's order of preference.
	Devices []Device
}

var loaded struct {
	sync.Mutex
	done     bool
	backends *Backends
	err      error
}

// DefaultLibraryPath is where a node looks for its backend libraries when none is configured:
// lib/ beside the executable (the release archive and bin/ of a source build), then
// ../lib/syn4pse (an install under /usr/local/bin).
func DefaultLibraryPath() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	dir := filepath.Dir(exe)
	return []string{filepath.Join(dir, "lib"), filepath.Join(dir, "..", "lib", "syn4pse")}
}

// LoadBackends loads the native backends once per process: the best CPU variant library for
// this CPU (or the one asked for), then every GPU backend library found. ggml keeps backends
// for the life of the process, so only the first call loads; later calls return its result.
// Init and everything that needs llama.cpp call it with default options when nothing did before.
func LoadBackends(opts BackendOptions) (*Backends, error) {
	loaded.Lock()
	defer loaded.Unlock()
	if !loaded.done {
		loaded.backends, loaded.err = loadBackends(opts)
		loaded.done = true
	}
	return loaded.backends, loaded.err
}

func loadBackends(opts BackendOptions) (*Backends, error) {
	initLog()
	dirs := opts.LibraryPath
	if len(dirs) == 0 {
		dirs = DefaultLibraryPath()
	}
	b := &Backends{LibraryPath: dirs, CPUVariant: Builtin}
	b.CPUVariants = findCPUVariants(dirs)
	if err := b.loadCPU(opts.CPUVariant); err != nil {
		return nil, err
	}
	if err := b.loadGPUs(dirs, opts.Require); err != nil {
		return nil, err
	}
	b.Devices = devices()
	return b, nil
}

// findCPUVariants lists libggml-cpu-*.so in the first folder that has any, scored for this CPU.
func findCPUVariants(dirs []string) []CPUVariantFile {
	for _, dir := range dirs {
		paths, _ := filepath.Glob(filepath.Join(dir, "libggml-cpu*"+libraryExt()))
		if len(paths) == 0 {
			continue
		}
		var found []CPUVariantFile
		for _, path := range paths {
			name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "libggml-cpu"), libraryExt())
			name = strings.TrimPrefix(name, "-")
			if name == "" {
				name = "generic"
			}
			score, err := backendScore(path)
			if score > 0 && err == "" {
				if missing := osVectorStateMissing(name); missing != "" {
					score, err = 0, "the operating system has not enabled "+missing+" state"
				}
			}
			found = append(found, CPUVariantFile{Name: name, Path: path, Score: score, Err: err})
		}
		sort.SliceStable(found, func(i, j int) bool { return found[i].Score > found[j].Score })
		return found
	}
	return nil
}

// vectorStateNeeded is the register state each x86-64 variant executes: 1 AVX, 2 AVX-512.
var vectorStateNeeded = map[string]int{
	"sandybridge": 1, "haswell": 1, "alderlake": 1,
	"skylakex": 2, "icelake": 2, "zen4": 2, "sapphirerapids": 2,
}

// osVectorStateMissing names the register state variant needs that the OS has not enabled, or
// "" when it runs.
func osVectorStateMissing(variant string) string {
	need := vectorStateNeeded[variant]
	have := int(C.syn_os_vector_state())
	switch {
	case have < 0 || have >= need:
		return ""
	case need == 2:
		return "AVX-512"
	}
	return "AVX"
}

func backendScore(path string) (int, string) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	score := int(C.syn_backend_score(cpath, &cerr))
	if cerr != nil {
		defer C.free(unsafe.Pointer(cerr))
		return -1, C.GoString(cerr)
	}
	if score == -2 {
		// A library without a score function runs anywhere ggml's loader would take it.
		return 1, ""
	}
	return score, ""
}

func (b *Backends) loadCPU(want string) error {
	if want == Builtin {
		return nil
	}
	var pick *CPUVariantFile
	switch want {
	case "", "auto":
		if len(b.CPUVariants) > 0 && b.CPUVariants[0].Score > 0 {
			pick = &b.CPUVariants[0]
		}
	default:
		for i := range b.CPUVariants {
			if b.CPUVariants[i].Name == want {
				pick = &b.CPUVariants[i]
			}
		}
		switch {
		case pick == nil:
			return fmt.Errorf("CPU variant %q not found in %s (found: %s): build the backends with `task build-third-party` or choose another engine.cpu_variant",
				want, strings.Join(b.LibraryPath, ", "), variantNames(b.CPUVariants))
		case pick.Score <= 0:
			return fmt.Errorf("CPU variant %q cannot run on this CPU (%s): choose engine.cpu_variant = \"auto\" or one of %s",
				want, cpuReason(*pick), variantNames(runnable(b.CPUVariants)))
		}
	}
	if pick == nil {
		return nil
	}
	reg, err := loadBackendLibrary(pick.Path)
	if err != nil {
		if want == "" || want == "auto" {
			slog.Warn("CPU variant not usable; running the builtin generic CPU code", "error", err)
			return nil
		}
		return err
	}
	// ggml orders devices by score, so the loaded variant's CPU device now comes before the
	// builtin one (score -1); check rather than assume, since llama.cpp takes the first.
	first := C.ggml_backend_dev_by_type(C.GGML_BACKEND_DEVICE_TYPE_CPU)
	if first == nil || C.ggml_backend_dev_backend_reg(first) != reg {
		return fmt.Errorf("the CPU variant %s loaded but ggml still prefers another CPU device", pick.Path)
	}
	b.CPUVariant, b.CPUPath = pick.Name, pick.Path
	return nil
}

func (b *Backends) loadGPUs(dirs []string, require []string) error {
	for _, name := range GPUBackends {
		path := findLibrary(dirs, "libggml-"+name+libraryExt())
		if path == "" {
			if slices.Contains(require, name) {
				return fmt.Errorf("this build expects the %s backend but libggml-%s%s is in none of %s: build it with `task build-third-party-%s`, or point engine.library_path at it",
					name, name, libraryExt(), strings.Join(dirs, ", "), name)
			}
			continue
		}
		reg, err := loadBackendLibrary(path)
		if err != nil {
			// A GPU library that cannot start (no driver, no device, a missing runtime library)
			// leaves the node on the CPU; it says why.
			slog.Warn("GPU backend not usable; running without it", "backend", name, "path", path, "error", err)
			continue
		}
		if C.ggml_backend_reg_dev_count(reg) == 0 {
			slog.Warn("GPU backend loaded but found no device; running without it", "backend", name, "path", path)
			continue
		}
		b.GPU = append(b.GPU, C.GoString(C.ggml_backend_reg_name(reg)))
	}
	return nil
}

func loadBackendLibrary(path string) (C.ggml_backend_reg_t, error) {
	score, openErr := backendScore(path)
	switch {
	case openErr != "":
		return nil, fmt.Errorf("load %s: %s", path, openErr)
	case score == 0:
		return nil, fmt.Errorf("load %s: the library says this machine cannot run it", path)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	reg := C.ggml_backend_load(cpath)
	if reg == nil {
		return nil, fmt.Errorf("load %s: ggml refused the library (another ggml version?)", path)
	}
	return reg, nil
}

func findLibrary(dirs []string, file string) string {
	for _, dir := range dirs {
		path := filepath.Join(dir, file)
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	return ""
}

func libraryExt() string {
	if runtime.GOOS == "windows" {
		return ".dll"
	}
	return ".so"
}

func runnable(files []CPUVariantFile) []CPUVariantFile {
	var out []CPUVariantFile
	for _, f := range files {
		if f.Score > 0 {
			out = append(out, f)
		}
	}
	return out
}

func variantNames(files []CPUVariantFile) string {
	if len(files) == 0 {
		return "none"
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

func cpuReason(f CPUVariantFile) string {
	if f.Err != "" {
		return f.Err
	}
	return "it needs an instruction this CPU lacks"
}

// Runnable lists the CPU variants found that this CPU can run, best first.
func (b *Backends) Runnable() []CPUVariantFile { return runnable(b.CPUVariants) }
