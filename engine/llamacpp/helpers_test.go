package llamacpp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// modelPath is a generated tiny llama model shared by the tests of this package.
var modelPath string

func TestMain(m *testing.M) {
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
