package gguf

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzGGUFCheck feeds arbitrary bytes to the header reader and the architecture checks: any
// input must give a File or an error, never a panic, a hang or an allocation the input's size
// does not bound. The seed corpus (testdata/fuzz/FuzzGGUFCheck) holds small valid GGUFs of
// each kind this node loads and corrupted ones; every crasher found is kept there.
func FuzzGGUFCheck(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("an error that is not a refusal: %v", err)
			}
			return
		}
		if err := CheckArchitecture(g); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("an error that is not a refusal: %v", err)
		}
		for _, ten := range g.Tensors {
			if end := uint64(g.DataOffset) + ten.Offset + ten.Bytes; end > uint64(len(b)) {
				t.Fatalf("tensor %s accepted past the end: ends at %d of %d bytes", ten.Name, end, len(b))
			}
		}
	})
}
