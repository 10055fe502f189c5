package llamacpp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// modelPath is a generated tiny llama model shared by the tests of this package.
var modelPath string

// libraryPath is where the tests find the native backend libraries, as a node would through
// engine.library_path: `task test` sets SYN4PSE_ENGINE_LIBRARY_PATH to bin/lib. Without it the
// tests run ggml's builtin generic CPU code (slower) and the variant tests skip.
var libraryPath = os.Getenv("SYN4PSE_ENGINE_LIBRARY_PATH")

// childVariantEnv names the CPU variant a child process of TestCPUVariantsGenerateSameTokens
// loads; it is not a SYN4PSE_ variable, so nothing mistakes it for a node setting.
const childVariantEnv = "LLAMACPP_TEST_CPU_VARIANT"

// childRequireEnv names the GPU backends a child process requires, as a -tags cuda build does.
const childRequireEnv = "LLAMACPP_TEST_REQUIRE"

func TestMain(m *testing.M) {
	opts := llamacpp.BackendOptions{CPUVariant: os.Getenv(childVariantEnv)}
	if require := os.Getenv(childRequireEnv); require != "" {
		opts.Require = strings.Split(require, ",")
	}
	if libraryPath != "" {
		opts.LibraryPath = []string{libraryPath}
	}
	if _, err := llamacpp.LoadBackends(opts); err != nil {
		fmt.Fprintln(os.Stderr, "native backends:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "syn4pse-llamacpp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modelPath = filepath.Join(dir, "tiny.gguf")
	if err := tinygguf.Write(modelPath, tinygguf.Options{Arch: "llama", Seed: 1}); err != nil {
		fmt.Fprintln(os.Stderr, "generate model:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }
