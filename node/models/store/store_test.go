package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// putBlob stores data through a BlobWriter and returns its File.
func putBlob(t *testing.T, s *Store, data []byte) File {
	t.Helper()
	w, err := s.BlobWriter("sha256:"+sha(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return File{Digest: "sha256:" + sha(data), Size: int64(len(data)), Role: RoleModel}
}

func putModel(t *testing.T, s *Store, name string, files ...File) {
	t.Helper()
	m := Manifest{Name: name, Modality: "llm", Engine: "llama_cpp", Files: files, PulledAt: time.Now().UTC()}
	if err := s.PutManifest(m); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCleansTempFilesKeepsPartials(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	putModel(t, s, "kept", putBlob(t, s, gguf(100)))
	files := map[string]bool{ // path under root: survives Open
		"manifests/.tmp-m.json-1":    false,
		"blobs/.tmp-sha256-x":        false,
		"partial/.tmp-ingest-abc":    false,
		"partial/sha256-" + sha(nil): true,
		"partial/url-0123.json":      false, // a note whose download is gone
		"partial/url-4567":           true,
		"partial/url-4567.json":      true,
	}
	for path := range files {
		if err := os.WriteFile(filepath.Join(root, path), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err = Open(root)
	if err != nil {
		t.Fatal(err)
	}
	for path, kept := range files {
		_, err := os.Stat(filepath.Join(root, path))
		if kept != (err == nil) {
			t.Errorf("%s: kept = %v, want %v", path, err == nil, kept)
		}
	}
	if list, err := s.List(); err != nil || len(list) != 1 || list[0].Name != "kept" {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestManifest(t *testing.T) {
	s := openStore(t)
	a, b := putBlob(t, s, gguf(300)), putBlob(t, s, gguf(200))
	putModel(t, s, "zeta", a)
	putModel(t, s, "alpha:7b", b)
	os.WriteFile(filepath.Join(s.root, manifestsDir, "broken.json"), []byte("{"), 0o644)

	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Name != "alpha:7b" || list[1].Name != "zeta" {
		t.Fatalf("List = %+v, %v; want alpha:7b, zeta", list, err)
	}
	if f, ok := list[1].Model(); !ok || f != a {
		t.Fatalf("Model() = %+v, %v; want %+v", f, ok, a)
	}
	tests := []struct {
		name    string
		wantErr error
		text    string
	}{
		{"zeta", nil, ""},
		{"missing", ErrNotFound, `model "missing": not found`},
		{"broken", nil, "damaged manifest"},
		{"../zeta", nil, "invalid model name"},
		{".hidden", nil, "invalid model name"},
	}
	for _, tt := range tests {
		_, err := s.Manifest(tt.name)
		switch {
		case tt.text == "" && err != nil:
			t.Errorf("Manifest(%q): %v", tt.name, err)
		case tt.text != "" && (err == nil || !strings.Contains(err.Error(), tt.text)):
			t.Errorf("Manifest(%q) = %v, want %q", tt.name, err, tt.text)
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("Manifest(%q) = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
}

func TestPutManifestChecksBlobs(t *testing.T) {
	s := openStore(t)
	f := putBlob(t, s, gguf(100))
	tests := []struct {
		name string
		m    Manifest
		text string
	}{
		{"missing blob", Manifest{Name: "m", Files: []File{{Digest: "sha256:" + sha([]byte("x")), Size: 1}}}, "not found in the store"},
		{"wrong size", Manifest{Name: "m", Files: []File{{Digest: f.Digest, Size: 99}}}, "has 100 bytes, the manifest says 99"},
		{"no files", Manifest{Name: "m"}, "at least one file"},
		{"bad name", Manifest{Name: "a/b", Files: []File{f}}, "invalid model name"},
		{"bad digest", Manifest{Name: "m", Files: []File{{Digest: "md5:abc"}}}, "invalid digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutManifest(tt.m); err == nil || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("PutManifest = %v, want %q", err, tt.text)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	s := openStore(t)
	own, shared, other := putBlob(t, s, gguf(1000)), putBlob(t, s, gguf(2000)), putBlob(t, s, gguf(3000))
	putModel(t, s, "a", own, shared)
	putModel(t, s, "b", shared)

	steps := []struct {
		name      string
		wantFreed int64
		wantErr   error
		gone      []File
		kept      []File
	}{
		{name: "a", wantFreed: own.Size, gone: []File{own}, kept: []File{shared, other}},
		{name: "a", wantErr: ErrNotFound},
		{name: "b", wantFreed: shared.Size, gone: []File{shared}, kept: []File{other}},
	}
	for _, step := range steps {
		freed, err := s.Delete(step.name)
		if !errors.Is(err, step.wantErr) || freed != step.wantFreed {
			t.Fatalf("Delete(%q) = %d, %v; want %d, %v", step.name, freed, err, step.wantFreed, step.wantErr)
		}
		for _, f := range step.gone {
			if s.HasBlob(f.Digest) {
				t.Errorf("after Delete(%q): blob %s still there", step.name, f.Digest)
			}
		}
		for _, f := range step.kept {
			if !s.HasBlob(f.Digest) {
				t.Errorf("after Delete(%q): blob %s gone", step.name, f.Digest)
			}
		}
	}

	// other was never in a manifest: Prune takes it.
	if freed, err := s.Prune(); err != nil || freed != other.Size || s.HasBlob(other.Digest) {
		t.Fatalf("Prune = %d, %v; want %d freed", freed, err, other.Size)
	}
}

func TestPutManifestReplacing(t *testing.T) {
	s := openStore(t)
	v1, v2 := putBlob(t, s, gguf(100)), putBlob(t, s, gguf(200))
	putModel(t, s, "m", v1)
	putModel(t, s, "m", v2)
	if s.HasBlob(v1.Digest) || !s.HasBlob(v2.Digest) {
		t.Fatalf("after replacing m: v1 present %v, v2 present %v; want only v2", s.HasBlob(v1.Digest), s.HasBlob(v2.Digest))
	}
}

func TestDiskUsage(t *testing.T) {
	s := openStore(t)
	if n, err := s.DiskUsage(); err != nil || n != 0 {
		t.Fatalf("empty store: DiskUsage = %d, %v", n, err)
	}
	putModel(t, s, "m", putBlob(t, s, gguf(5000)))
	w, err := s.BlobWriter("sha256:"+sha(gguf(700)), 700)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(gguf(700)[:300])
	w.Abort()
	manifest, _ := os.Stat(s.manifestPath("m"))
	if n, err := s.DiskUsage(); err != nil || n != 5000+300+manifest.Size() {
		t.Fatalf("DiskUsage = %d, %v; want %d", n, err, 5000+300+manifest.Size())
	}
}
