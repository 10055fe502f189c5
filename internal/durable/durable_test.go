package durable_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

func TestWriteFileReplacesWithPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	for _, content := range []string{"first", "second"} {
		if err := durable.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	onlyFiles(t, filepath.Dir(path), "key")
}

func TestFailedWriteLeavesTheOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	if err := durable.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	err := durable.Write(path, 0o644, func(f *os.File) error {
		f.WriteString("half of the new")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("content %q after a failed write", got)
	}
	onlyFiles(t, filepath.Dir(path), "m.json")
}

func TestCommitMovesAFinishedTempFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.gguf")
	tmp := durable.TempPath(path)
	if !strings.HasPrefix(filepath.Base(tmp), durable.TempPrefix) || filepath.Dir(tmp) != filepath.Dir(path) {
		t.Fatalf("TempPath(%s) = %s", path, tmp)
	}
	if err := os.WriteFile(tmp, []byte("gguf"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := durable.Commit(tmp, path); err != nil {
		t.Fatal(err)
	}
	onlyFiles(t, filepath.Dir(path), "model.gguf")
	if err := durable.Commit(tmp, path); err == nil {
		t.Fatal("committing a temp file that is gone succeeded")
	}
}

// onlyFiles fails unless dir holds exactly names: no temporary file is left behind.
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}
