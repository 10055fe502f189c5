package llamacpp_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoWrapperReplacesExportedFlags runs scripts/go.sh as a user whose shell exports empty
// and foreign cgo flags: the build must still get its include paths and optimisation, and say
// that it ignored the exported values (they once dropped llama.h from the include path silently).
func TestGoWrapperReplacesExportedFlags(t *testing.T) {
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "go.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "bash", script, "env", "CGO_CPPFLAGS", "CGO_CFLAGS")
	cmd.Env = append(os.Environ(), "CGO_CPPFLAGS=", "CGO_CFLAGS=-O0 -g", "MARCH=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "/llama/llama.cpp/include") || lines[1] != "-O3" {
		t.Fatalf("go env after go.sh = %q, want the include paths and -O3", lines)
	}
	for _, v := range []string{"CGO_CPPFLAGS=''", "CGO_CFLAGS='-O0 -g'"} {
		if !strings.Contains(stderr.String(), "note: ignoring "+v) {
			t.Errorf("no note about %s in:\n%s", v, stderr.String())
		}
	}
}
