package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	ollama "github.com/ollama/ollama/api"

	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
)

// startOllamaNode runs a node that serves Ollama's API on a free port, and a client for it.
func startOllamaNode(t *testing.T, decls ...config.Model) *ollama.Client {
	t.Helper()
	n, err := node.Start(t.Context(), &config.Config{
		DataDir:   t.TempDir(),
		Server:    config.Server{Host: "127.0.0.1", ShutdownTimeout: 10 * time.Second, Ollama: true},
		Log:       config.Log{Level: "info", Format: "text"},
		Models:    decls,
		Lifecycle: config.Lifecycle{KeepAlive: 5 * time.Minute},
	})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	base, err := url.Parse("http://" + n.OllamaAddr())
	if err != nil {
		t.Fatal(err)
	}
	return ollama.NewClient(base, http.DefaultClient)
}

func TestOllamaPortOffByDefault(t *testing.T) {
	if n := startNode(t); n.OllamaAddr() != "" {
		t.Fatalf("OllamaAddr = %q with server.ollama_port unset", n.OllamaAddr())
	}
}

func TestOllamaAPI(t *testing.T) {
	c := startOllamaNode(t, tinyDecl("tiny"), embedDecl(t, "emb"))
	ctx := t.Context()
	if err := c.Heartbeat(ctx); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if v, err := c.Version(ctx); err != nil || v == "" {
		t.Fatalf("version: %q %v", v, err)
	}

	t.Run("chat streaming", func(t *testing.T) {
		var chunks int
		var last ollama.ChatResponse
		var text strings.Builder
		err := c.Chat(ctx, &ollama.ChatRequest{Model: "tiny", Messages: []ollama.Message{{Role: "user", Content: "hello"}},
			Options: map[string]any{"num_predict": 4, "temperature": 0, "seed": 1, "num_ctx": 4096}}, func(r ollama.ChatResponse) error {
			chunks++
			text.WriteString(r.Message.Content)
			last = r
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The generated model may end early on its end-of-generation token.
		if chunks < 1 || !last.Done || last.EvalCount < 1 || last.EvalCount > 4 || last.PromptEvalCount == 0 || last.TotalDuration == 0 {
			t.Fatalf("%d chunks, last %+v", chunks, last)
		}
	})
	t.Run("chat not streaming", func(t *testing.T) {
		stream := false
		var got []ollama.ChatResponse
		err := c.Chat(ctx, &ollama.ChatRequest{Model: "tiny", Stream: &stream, Messages: []ollama.Message{{Role: "user", Content: "hello"}},
			Options: map[string]any{"num_predict": 3, "seed": 1}, KeepAlive: &ollama.Duration{Duration: time.Minute}}, func(r ollama.ChatResponse) error {
			got = append(got, r)
			return nil
		})
		if err != nil || len(got) != 1 || !got[0].Done || got[0].EvalCount < 1 || got[0].EvalCount > 3 {
			t.Fatalf("%+v %v", got, err)
		}
	})
	t.Run("generate", func(t *testing.T) {
		var text strings.Builder
		var last ollama.GenerateResponse
		err := c.Generate(ctx, &ollama.GenerateRequest{Model: "tiny", Prompt: "once upon", System: "be brief", Options: map[string]any{"num_predict": 3, "seed": 1}},
			func(r ollama.GenerateResponse) error {
				text.WriteString(r.Response)
				last = r
				return nil
			})
		if err != nil || !last.Done || last.EvalCount < 1 || last.EvalCount > 3 {
			t.Fatalf("%q %+v %v", text.String(), last, err)
		}
		err = c.Generate(ctx, &ollama.GenerateRequest{Model: "tiny", Raw: true, Prompt: "once upon", Format: []byte(`"json"`), Options: map[string]any{"num_predict": 3}},
			func(r ollama.GenerateResponse) error { last = r; return nil })
		if err != nil || !last.Done {
			t.Fatalf("raw json generate: %+v %v", last, err)
		}
	})
	t.Run("embed", func(t *testing.T) {
		res, err := c.Embed(ctx, &ollama.EmbedRequest{Model: "emb", Input: []string{"a cat", "a dog"}})
		if err != nil || len(res.Embeddings) != 2 || len(res.Embeddings[0]) != 64 {
			t.Fatalf("%+v %v", res, err)
		}
		old, err := c.Embeddings(ctx, &ollama.EmbeddingRequest{Model: "emb", Prompt: "a cat"})
		if err != nil || len(old.Embedding) != 64 {
			t.Fatalf("legacy embeddings: %+v %v", old, err)
		}
	})
	t.Run("tags show ps", func(t *testing.T) {
		tags, err := c.List(ctx)
		if err != nil || len(tags.Models) != 2 {
			t.Fatalf("tags: %+v %v", tags, err)
		}
		show, err := c.Show(ctx, &ollama.ShowRequest{Model: "tiny"})
		if err != nil || show.Details.Family != "llama" || show.ModelInfo["general.architecture"] != "llama" || len(show.Capabilities) == 0 {
			t.Fatalf("show: %+v %v", show, err)
		}
		ps, err := c.ListRunning(ctx)
		if err != nil || len(ps.Models) == 0 {
			t.Fatalf("ps: %+v %v", ps, err)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		var se ollama.StatusError
		_, err := c.Show(ctx, &ollama.ShowRequest{Model: "nope"})
		if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
			t.Fatalf("show unknown model: %v", err)
		}
		err = c.Chat(ctx, &ollama.ChatRequest{Model: "nope", Messages: []ollama.Message{{Role: "user", Content: "hi"}}}, func(ollama.ChatResponse) error { return nil })
		if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
			t.Fatalf("chat unknown model: %v", err)
		}
		err = c.Generate(ctx, &ollama.GenerateRequest{Model: "tiny", Prompt: "x", Format: []byte(`"yaml"`)}, func(ollama.GenerateResponse) error { return nil })
		if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest {
			t.Fatalf("bad format: %v", err)
		}
		if err := c.Heartbeat(ctx); err != nil {
			t.Fatalf("node stopped serving: %v", err)
		}
	})
}

func TestOllamaPull(t *testing.T) {
	blob, err := os.ReadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(blob) }))
	t.Cleanup(src.Close)
	c := startOllamaNode(t)
	var progress []ollama.ProgressResponse
	err = c.Pull(t.Context(), &ollama.PullRequest{Model: src.URL + "/pulled.gguf"}, func(p ollama.ProgressResponse) error {
		progress = append(progress, p)
		return nil
	})
	if err != nil || len(progress) < 2 || progress[len(progress)-1].Status != "success" {
		t.Fatalf("pull: %+v %v", progress, err)
	}
	tags, err := c.List(t.Context())
	if err != nil || len(tags.Models) != 1 || tags.Models[0].Name != "pulled" {
		t.Fatalf("tags after pull: %+v %v", tags, err)
	}
	if err := c.Delete(t.Context(), &ollama.DeleteRequest{Model: "pulled"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// Ollama's client sends tools and a tool round trip (an assistant call, the tool's answer) in
// the history; the node renders them through the model's own template (Qwen 2.5's) and answers.
func TestOllamaChatWithTools(t *testing.T) {
	c := startOllamaNode(t, qwenDecl(t))
	var tool ollama.Tool
	if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"forecast","description":"Weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}}}`), &tool); err != nil {
		t.Fatal(err)
	}
	var args ollama.ToolCallFunctionArguments
	if err := json.Unmarshal([]byte(`{"city":"Lima"}`), &args); err != nil {
		t.Fatal(err)
	}
	stream := false
	var res ollama.ChatResponse
	err := c.Chat(t.Context(), &ollama.ChatRequest{Model: "qwen", Stream: &stream, Tools: ollama.Tools{tool},
		Messages: []ollama.Message{
			{Role: "user", Content: "Weather in Lima?"},
			{Role: "assistant", ToolCalls: []ollama.ToolCall{{ID: "call_1", Function: ollama.ToolCallFunction{Name: "forecast", Arguments: args}}}},
			{Role: "tool", Content: `{"temp": 19}`, ToolCallID: "call_1"},
		},
		Options: map[string]any{"num_predict": 4, "seed": 1}}, func(r ollama.ChatResponse) error { res = r; return nil })
	if err != nil {
		t.Fatal(err)
	}
	var plain ollama.ChatResponse
	err = c.Chat(t.Context(), &ollama.ChatRequest{Model: "qwen", Stream: &stream, Messages: []ollama.Message{{Role: "user", Content: "Weather in Lima?"}},
		Options: map[string]any{"num_predict": 4, "seed": 1}}, func(r ollama.ChatResponse) error { plain = r; return nil })
	if err != nil {
		t.Fatal(err)
	}
	// The tool's definition and the round trip are in the prompt: far more than the question.
	if !res.Done || res.PromptEvalCount < plain.PromptEvalCount+50 {
		t.Errorf("prompt with tools %d tokens, without %d", res.PromptEvalCount, plain.PromptEvalCount)
	}
}
