package node_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// patchTensor rewrites, in the GGUF file at src, the description of tensor name (after its
// name: dimension count, dimensions, type, offset) with patch, and writes the result to dst.
func patchTensor(t *testing.T, src, dst, name string, patch func(info []byte)) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(name)))
	i := bytes.Index(b, append(n[:], name...))
	if i < 0 {
		t.Fatalf("%s has no tensor %s", src, name)
	}
	patch(b[i+8+len(name):])
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A node given crafted model files lists each as unavailable with the GGUF check's reason, and
// serves its good model beside them.
func TestCraftedGGUFsRefused(t *testing.T) {
	dir := t.TempDir()
	offset := filepath.Join(dir, "offset.gguf")
	patchTensor(t, modelPath, offset, "blk.0.attn_q.weight", func(info []byte) {
		binary.LittleEndian.PutUint64(info[4+2*8+4:], 1<<30) // 2 dimensions, then type, then offset
	})
	truncated := filepath.Join(dir, "truncated.gguf")
	whole, err := os.ReadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, whole[:len(whole)-1000], 0o644); err != nil {
		t.Fatal(err)
	}
	nobias := filepath.Join(dir, "qwen2vl.gguf")
	if err := tinygguf.Write(nobias, tinygguf.Options{Arch: "qwen2vl", Seed: 3, Drop: func(name string) bool { return strings.HasSuffix(name, "attn_q.bias") }}); err != nil {
		t.Fatal(err)
	}
	projector := filepath.Join(dir, "mmproj.gguf")
	if err := tinygguf.WriteVisionProjector(projector, 3); err != nil {
		t.Fatal(err)
	}
	badProjector := filepath.Join(dir, "bad-mmproj.gguf")
	patchTensor(t, projector, badProjector, "v.blk.0.attn_v.weight", func(info []byte) {
		binary.LittleEndian.PutUint32(info, 9) // dimensions
	})

	decl := func(name, path string) config.Model { d := tinyDecl(name); d.Path = path; return d }
	withProjector := tinyDecl("bad-mmproj")
	withProjector.Projector = badProjector
	n := startNode(t, tinyDecl("good"), decl("offset", offset), decl("truncated", truncated), decl("qwen2vl", nobias), withProjector)
	conn := grpcConn(t, n)
	client := pb.NewInferenceServiceClient(conn)

	stream, err := client.Chat(t.Context(), &pb.ChatRequest{Model: "good", Messages: []*pb.Message{{Role: "user", Content: "hi"}},
		Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(3))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(stream); err != nil {
		t.Fatalf("good model: %v", err)
	}
	want := map[string]string{
		"offset":     "load " + offset + ": malformed GGUF file: tensor blk.0.attn_q.weight extends past end of file: offset 1073741824 size 16384",
		"truncated":  "load " + truncated + ": malformed GGUF file: tensor ",
		"qwen2vl":    "load " + nobias + ": malformed GGUF file: tensor blk.0.attn_q.bias is missing: llama.cpp's graph for qwen2vl models uses it unchecked",
		"bad-mmproj": "mmproj " + badProjector + ": malformed GGUF file: tensor v.blk.0.attn_v.weight has 9 dimensions, want 1 to 4",
	}
	// A request for a crafted model loads it, fails, and leaves the reason in the catalog.
	for name := range want {
		stream, err := client.Chat(t.Context(), &pb.ChatRequest{Model: name, Messages: []*pb.Message{{Role: "user", Content: "hi"}}})
		if err == nil {
			_, _, err = collect(stream)
		}
		if err == nil {
			t.Fatalf("%s: chat succeeded", name)
		}
	}
	list, err := pb.NewModelServiceClient(conn).ListModels(t.Context(), &pb.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list.GetModels() {
		if m.GetName() == "good" {
			if m.GetState() != pb.ModelState_MODEL_STATE_LOADED {
				t.Errorf("good: %v", m)
			}
			continue
		}
		if m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE || !strings.Contains(m.GetUnavailableReason(), want[m.GetName()]) {
			t.Errorf("%s: %v %q\n want the reason %q", m.GetName(), m.GetState(), m.GetUnavailableReason(), want[m.GetName()])
		}
	}
	// The node still serves.
	stream, err = client.Chat(t.Context(), &pb.ChatRequest{Model: "good", Messages: []*pb.Message{{Role: "user", Content: "again"}},
		Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(2))}})
	if err == nil {
		_, _, err = collect(stream)
	}
	if err != nil {
		t.Fatalf("good model after the crafted ones: %v", err)
	}
}
