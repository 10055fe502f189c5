package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBlobWriterResume(t *testing.T) {
	data := gguf(1<<20 + 5)
	half := len(data) / 2
	tests := []struct {
		name   string
		tamper bool // flip a byte of the partial file while no one holds it
	}{
		{name: "resumes and verifies"},
		{name: "tampered partial fails", tamper: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			digest := "sha256:" + sha(data)
			w, err := s.BlobWriter(digest, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data[:half]); err != nil {
				t.Fatal(err)
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
			partial := filepath.Join(root, partialDir, "sha256-"+sha(data))
			if tt.tamper {
				b, _ := os.ReadFile(partial)
				b[half/2] ^= 0xff
				os.WriteFile(partial, b, 0o644)
			}

			s, err = Open(root) // a restart in between
			if err != nil {
				t.Fatal(err)
			}
			w, err = s.BlobWriter(digest, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if w.Offset() != int64(half) {
				t.Fatalf("Offset() = %d, want %d", w.Offset(), half)
			}
			if _, err := w.Write(data[half:]); err != nil {
				t.Fatal(err)
			}
			err = w.Commit()
			if !tt.tamper {
				if err != nil {
					t.Fatal(err)
				}
				checkBlob(t, s, data)
				return
			}
			if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), digest) {
				t.Fatalf("Commit of tampered bytes = %v, want ErrDigestMismatch naming %s", err, digest)
			}
			if err := w.Discard(); err != nil {
				t.Fatal(err)
			}
			if files := storeFiles(t, root); len(files) != 0 || s.HasBlob(digest) {
				t.Fatalf("left behind: %v", files)
			}
		})
	}
}

func TestBlobWriterLimits(t *testing.T) {
	s := openStore(t)
	data := gguf(1000)
	digest := "sha256:" + sha(data)
	w, err := s.BlobWriter(digest, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BlobWriter(digest, int64(len(data))); !errors.Is(err, ErrBusy) {
		t.Fatalf("second writer of one blob: %v, want ErrBusy", err)
	}
	if _, err := w.Write(append(bytes.Clone(data), 'x')); err == nil {
		t.Fatal("wrote past the expected size")
	}
	w.Write(data[:10])
	if err := w.Commit(); err == nil || !strings.Contains(err.Error(), "incomplete: 10 of 1000 bytes") {
		t.Fatalf("Commit of a short blob = %v", err)
	}
	w.Write(data[10:]) // still open after a short Commit
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BlobWriter(digest, int64(len(data))); err != nil {
		t.Fatalf("writer after Commit released the blob: %v", err)
	}
	if _, err := s.BlobWriter("sha256:xyz", 1); err == nil {
		t.Fatal("BlobWriter accepted a bad digest")
	}
}
