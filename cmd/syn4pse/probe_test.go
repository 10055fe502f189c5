package main

import (
	"bytes"
	le "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// shortPositions writes to dst the audio projector at src with its position table reshaped
// from [64, 1500] to [128, 750]: the same bytes, so the file passes every structural check,
// but fewer positions than the 1500 the Whisper encoder asserts (GGML_ASSERT) it has. llama.cpp
// aborts the process initialising the projector: a crash past the GGUF check.
func shortPositions(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	name := "a.position_embd.weight"
	var n [8]byte
	le.LittleEndian.PutUint64(n[:], uint64(len(name)))
	i := bytes.Index(b, append(n[:], name...))
	if i < 0 {
		t.Fatalf("no %s in %s", name, src)
	}
	dims := b[i+8+len(name)+4:]
	if le.LittleEndian.Uint64(dims) != 64 || le.LittleEndian.Uint64(dims[8:]) != 1500 {
		t.Fatalf("%s: unexpected shape", name)
	}
	le.LittleEndian.PutUint64(dims, 128)
	le.LittleEndian.PutUint64(dims[8:], 750)
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A model file that crashes llama.cpp (here an abort on a failed GGML_ASSERT) crashes only the
// load probe's child: the node lists the model unavailable with the signal, and serves its
// other models; a malformed file is refused by the GGUF check with its reason.
func TestLoadProbeKeepsTheNodeUp(t *testing.T) {
	dir := t.TempDir()
	models := filepath.Join(dir, "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		t.Fatal(err)
	}
	tiny, audio, crash := filepath.Join(models, "tiny.gguf"), filepath.Join(models, "audio.gguf"), filepath.Join(models, "crash-mmproj.gguf")
	if err := tinygguf.Write(tiny, tinygguf.Options{Seed: 5}); err != nil {
		t.Fatal(err)
	}
	if err := tinygguf.WriteAudioProjector(audio, 5); err != nil {
		t.Fatal(err)
	}
	shortPositions(t, audio, crash)
	whole, err := os.ReadFile(tiny)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(models, "truncated.gguf")
	if err := os.WriteFile(truncated, whole[:len(whole)/2], 0o644); err != nil {
		t.Fatal(err)
	}

	grpcPort, httpPort := freePort(t), freePort(t)
	conf := fmt.Sprintf(`data_dir = "data"

[server]
host = "127.0.0.1"
grpc_port = %d
http_port = %d

[models.good]
path = "models/tiny.gguf"
threads = 1
context_length = 256

[models.crash]
path = "models/tiny.gguf"
mmproj = "models/crash-mmproj.gguf"
threads = 1
context_length = 256

[models.truncated]
path = "models/truncated.gguf"
threads = 1
`, grpcPort, httpPort)
	serve := startServe(t, dir, conf)

	conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///127.0.0.1:%d", grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The node preloads the three at start; wait until each has settled.
	states := map[string]*pb.ModelInfo{}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		list, err := pb.NewModelServiceClient(conn).ListModels(t.Context(), &pb.ListModelsRequest{})
		settled := 0
		for _, m := range list.GetModels() {
			states[m.GetName()] = m
			if s := m.GetState(); s == pb.ModelState_MODEL_STATE_LOADED || s == pb.ModelState_MODEL_STATE_UNAVAILABLE {
				settled++
			}
		}
		if err == nil && settled == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("models not settled: %v %v", err, states)
		}
		select {
		case err := <-serve.exited:
			t.Fatalf("the node exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if m := states["good"]; m.GetState() != pb.ModelState_MODEL_STATE_LOADED {
		t.Errorf("good: %v", m)
	}
	want := map[string]string{
		"crash": "load " + filepath.Join(dir, "models", "tiny.gguf") +
			": the engine crashed loading this file (signal SIGABRT: GGML_ASSERT(model.position_embeddings->ne[1] >= n_pos) failed); the file is malformed or unsupported",
		"truncated": "malformed GGUF file: tensor ",
	}
	for name, reason := range want {
		if m := states[name]; m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE || !strings.Contains(m.GetUnavailableReason(), reason) {
			t.Errorf("%s: %v %q\n want the reason %q", name, m.GetState(), m.GetUnavailableReason(), reason)
		}
	}

	// The node is alive and the good model answers.
	stream, err := pb.NewInferenceServiceClient(conn).Chat(t.Context(), &pb.ChatRequest{Model: "good",
		Messages: []*pb.Message{{Role: "user", Content: "hi"}}, Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(3))}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("chat with good: %v", err)
			}
			break
		}
	}
	select {
	case err := <-serve.exited:
		t.Fatalf("the node exited: %v", err)
	default:
	}

	// The good model's file passed its probe and is remembered; the crashing pair is not.
	b, err := os.ReadFile(filepath.Join(dir, "data", "load-probes.json"))
	if err != nil {
		t.Fatal(err)
	}
	var passed map[string]time.Time
	if err := json.Unmarshal(b, &passed); err != nil || len(passed) != 1 {
		t.Fatalf("load-probes.json: %v %s", err, b)
	}
	for key := range passed {
		if !strings.HasPrefix(key, filepath.Join(dir, "models", "tiny.gguf")+"|") || strings.Contains(key, "crash") {
			t.Errorf("remembered %q", key)
		}
	}
	if n := strings.Count(serve.log.String(), "model load probe passed"); n != 1 {
		t.Errorf("%d probes passed, want 1", n)
	}
}
