package main

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

func TestEmbedCommand(t *testing.T) {
	dir := t.TempDir()
	if err := tinygguf.Write(filepath.Join(dir, "bert.gguf"), tinygguf.Options{Arch: "bert", Seed: 5}); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`data_dir = "data"

[server]
host = "127.0.0.1"
grpc_port = %d
http_port = %d

[models.vec]
modality = "embeddings"
path = "bert.gguf"
threads = 1
pooling = "cls"
`, freePort(t), freePort(t))
	startServe(t, dir, conf)
	deadline := time.Now().Add(time.Minute)
	for {
		out, stderr, code := syn4pse(t, dir, "", "embed", "vec", "the cat sat", "hello")
		if code == 0 {
			var res embedOutput
			if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Embeddings) != 2 || len(res.Embeddings[0]) != 64 || res.PromptTokens == 0 {
				t.Fatalf("embed printed %q: %v", out, err)
			}
			var sum float64
			for _, x := range res.Embeddings[1] {
				sum += float64(x) * float64(x)
			}
			if math.Abs(sum-1) > 1e-4 {
				t.Errorf("norm² %g, want 1", sum)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("embed: code %d %s", code, stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, stderr, code := syn4pse(t, dir, "", "embed", "vec"); code == 0 {
		t.Errorf("embed without TEXT succeeded: %s", stderr)
	}
}
