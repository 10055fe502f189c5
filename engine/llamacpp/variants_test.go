package llamacpp_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
)

// x86Features is what each x86-64 CPU variant needs, in /proc/cpuinfo's names: the oracle the
// chosen variant is checked against, written from the instruction sets, not from ggml's code.
var x86Features = map[string][]string{
	"x64":            {},
	"sse42":          {"sse4_2"},
	"sandybridge":    {"sse4_2", "avx"},
	"haswell":        {"sse4_2", "avx", "f16c", "avx2", "bmi2", "fma"},
	"alderlake":      {"sse4_2", "avx", "f16c", "avx2", "bmi2", "fma", "avx_vnni"},
	"skylakex":       {"sse4_2", "avx", "f16c", "avx2", "bmi2", "fma", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"},
	"icelake":        {"sse4_2", "avx", "f16c", "avx2", "bmi2", "fma", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni"},
	"zen4":           {"sse4_2", "avx", "f16c", "avx2", "bmi2", "fma", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16"},
	"sapphirerapids": {"sse4_2", "avx", "f16c", "avx2", "bmi2", "fma", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"},
}

// loadedBackends is what TestMain loaded, skipping the test where no library folder is set.
func loadedBackends(t *testing.T) *llamacpp.Backends {
	t.Helper()
	if libraryPath == "" {
		t.Skip("SYN4PSE_ENGINE_LIBRARY_PATH is unset: run through `task test`, which builds the CPU variants into bin/lib")
	}
	b, err := llamacpp.LoadBackends(llamacpp.BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.CPUVariants) == 0 {
		t.Fatalf("no CPU variant library in %s: build them with `task build-third-party`", libraryPath)
	}
	return b
}

func cpuFlags(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		t.Skipf("no /proc/cpuinfo: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "flags" {
			return strings.Fields(value)
		}
	}
	t.Skip("/proc/cpuinfo has no flags line")
	return nil
}

func hasAll(flags, need []string) bool {
	for _, f := range need {
		if !slices.Contains(flags, f) {
			return false
		}
	}
	return true
}

// TestCPUVariantMatchesCPU checks ggml's run-time choice against /proc/cpuinfo: every variant
// this CPU can run scores above zero and no other does, and the variant in use is one that no
// runnable variant strictly extends (on an AMX Xeon: sapphirerapids; on Zen 4: zen4).
func TestCPUVariantMatchesCPU(t *testing.T) {
	b := loadedBackends(t)
	if os.Getenv(childVariantEnv) != "" {
		t.Skip("child process of the variant test")
	}
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		if b.CPUVariant == llamacpp.Builtin {
			t.Fatalf("no CPU variant chosen among %v", b.CPUVariants)
		}
		t.Skipf("the feature oracle covers linux/amd64; chose %s", b.CPUVariant)
	}
	flags := cpuFlags(t)
	t.Logf("chosen %s from %s", b.CPUVariant, b.CPUPath)
	for _, v := range b.CPUVariants {
		need, known := x86Features[v.Name]
		if !known {
			t.Errorf("variant %s has no entry in the oracle", v.Name)
			continue
		}
		if runs := hasAll(flags, need); runs != (v.Score > 0) {
			t.Errorf("variant %s: ggml score %d, but the CPU flags say runnable=%v (needs %v)", v.Name, v.Score, runs, need)
		}
	}
	chosen, ok := x86Features[b.CPUVariant]
	if !ok {
		t.Fatalf("chosen variant %q is not a known x86 variant", b.CPUVariant)
	}
	if !hasAll(flags, chosen) {
		t.Fatalf("chosen variant %s needs %v, which this CPU lacks", b.CPUVariant, chosen)
	}
	for _, v := range b.CPUVariants {
		need := x86Features[v.Name]
		if v.Name != b.CPUVariant && hasAll(flags, need) && len(need) > len(chosen) && hasAll(need, chosen) {
			t.Errorf("chose %s although %s runs here and extends it", b.CPUVariant, v.Name)
		}
	}
	if slices.Contains(flags, "amx_int8") && b.CPUVariant != "sapphirerapids" {
		t.Errorf("this CPU has AMX but runs %s: the AMX kernels are unused", b.CPUVariant)
	}
}

// TestCPUVariantsGenerateSameTokens loads each variant this CPU runs, and the builtin code, in
// a process of its own (ggml keeps a backend for the life of a process) and checks that the
// same seeded request gives the same text in every one.
func TestCPUVariantsGenerateSameTokens(t *testing.T) {
	b := loadedBackends(t)
	if os.Getenv(childVariantEnv) != "" {
		t.Skip("child process of the variant test")
	}
	variants := []string{llamacpp.Builtin}
	for _, v := range b.Runnable() {
		variants = append(variants, v.Name)
	}
	outputs := map[string]string{}
	for _, variant := range variants {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestVariantChild$", "-test.v")
		cmd.Env = append(os.Environ(), childVariantEnv+"="+variant)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("variant %s: %v\n%s", variant, err, out)
		}
		var got, ran string
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "variant-child: ran "); ok {
				ran = v
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "variant-child: text "); ok {
				got = v
			}
		}
		if ran != variant || got == "" {
			t.Fatalf("variant %s: child ran %q with output %q\n%s", variant, ran, got, out)
		}
		outputs[variant] = got
		t.Logf("%-15s %s", variant, got)
	}
	for _, variant := range variants[1:] {
		if outputs[variant] != outputs[variants[0]] {
			t.Errorf("variant %s generated %s, %s generated %s", variant, outputs[variant], variants[0], outputs[variants[0]])
		}
	}
}

// TestVariantChild is the child process of TestCPUVariantsGenerateSameTokens.
func TestVariantChild(t *testing.T) {
	want := os.Getenv(childVariantEnv)
	if want == "" {
		t.Skip("run by TestCPUVariantsGenerateSameTokens")
	}
	b, err := llamacpp.LoadBackends(llamacpp.BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	llm := load(t, engine.LoadOptions{Threads: 2})
	req := engine.GenerateRequest{Prompt: "The quick brown fox", Sampling: engine.DefaultSampling(), MaxTokens: 24, IgnoreEOS: true}
	req.Sampling.Seed = 42
	_, pieces, _ := generate(t, llm, req)
	t.Logf("\nvariant-child: ran %s\nvariant-child: text %q", b.CPUVariant, strings.Join(pieces, ""))
}

// TestBackendChoiceErrors starts processes whose backend options cannot be met and checks that
// each stops at once with a message that says what to do.
func TestBackendChoiceErrors(t *testing.T) {
	b := loadedBackends(t)
	if os.Getenv(childVariantEnv) != "" || os.Getenv(childRequireEnv) != "" {
		t.Skip("child process")
	}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"a GPU backend the build requires is missing", []string{childRequireEnv + "=cuda"},
			"this build expects the cuda backend but libggml-cuda.so is in none of"},
		{"an unknown variant", []string{childVariantEnv + "=pentium4"}, `CPU variant "pentium4" not found in`},
	}
	for _, v := range b.CPUVariants {
		if v.Score == 0 {
			tests = append(tests, struct {
				name string
				env  []string
				want string
			}{"a variant this CPU cannot run", []string{childVariantEnv + "=" + v.Name}, "cannot run on this CPU"})
			break
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestVariantChild$")
			cmd.Env = append(os.Environ(), tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("want a failed start saying %q; err %v, output:\n%s", tt.want, err, out)
			}
		})
	}
}

// TestBrokenGPULibraryLeavesTheCPU starts a process whose library folder holds a GPU backend
// that cannot load (as libggml-cuda.so does on a machine without the NVIDIA driver): the node
// must say why and go on with the CPU variant.
func TestBrokenGPULibraryLeavesTheCPU(t *testing.T) {
	b := loadedBackends(t)
	if os.Getenv(childVariantEnv) != "" || os.Getenv(childRequireEnv) != "" {
		t.Skip("child process")
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(libraryPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(libraryPath, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "libggml-vulkan.so"), []byte("not a library"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestVariantChild$", "-test.v")
	cmd.Env = append(os.Environ(), "SYN4PSE_ENGINE_LIBRARY_PATH="+dir, childVariantEnv+"=auto")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("a broken GPU library stopped the process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "GPU backend not usable") || !strings.Contains(string(out), "variant-child: ran "+b.CPUVariant) {
		t.Fatalf("want a warning and the CPU variant %s:\n%s", b.CPUVariant, out)
	}
}

// TestQuantize converts the generated F32 model to Q8_0 with llama.cpp's quantizer, leaves no
// temporary file behind, and the result loads and generates.
func TestQuantize(t *testing.T) {
	if os.Getenv(childVariantEnv) != "" || os.Getenv(childRequireEnv) != "" {
		t.Skip("child process")
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "tiny-q8_0.gguf")
	if err := llamacpp.Quantize(modelPath, dst, "q8_0", 1); err != nil {
		t.Fatal(err)
	}
	if err := llamacpp.Quantize(modelPath, filepath.Join(dir, "x.gguf"), "q3_x", 1); err == nil || !strings.Contains(err.Error(), "want q4_0") {
		t.Fatalf("unknown type: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files left: %v", entries)
	}
	llm, err := llamacpp.New().LoadLLM(t.Context(), engine.LoadOptions{Path: dst, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer llm.Close()
	if q := llm.Info().Quantization; q != "Q8_0" {
		t.Errorf("quantization %q, want Q8_0", q)
	}
	req := engine.GenerateRequest{Prompt: "Once", Sampling: greedy(), MaxTokens: 4, IgnoreEOS: true}
	if _, _, res := generate(t, llm, req); res.CompletionTokens != 4 {
		t.Fatalf("generated %d tokens", res.CompletionTokens)
	}
}
