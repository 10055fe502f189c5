package httpapi_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/enginetest"
	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/httpapi"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/modelstest"
)

// These tests run the OpenAI routes over the fake engine (engine/enginetest), which answers
// with the words of the last message: no cgo, milliseconds. node/http_test.go runs the same
// routes over real llama.cpp and a real OpenAI client.

// serve is an HTTP API over one model, "echo", on the fake engine.
func serve(t *testing.T) string {
	t.Helper()
	url, _ := serveWith(t, &enginetest.Engine{}, models.Options{})
	return url
}

// serveWith is serve over eng with the catalog's options; it returns the catalog too.
func serveWith(t *testing.T, eng *enginetest.Engine, opts models.Options) (string, *models.Manager) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "echo.gguf")
	if err := os.WriteFile(path, []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	var registry engine.Registry
	registry.RegisterLLM(eng)
	catalog := models.New(&registry, []models.Decl{{Name: "echo", Modality: "llm", Engine: engine.DefaultEngine, Path: path,
		Enabled: true, Options: engine.LoadOptions{Parallel: 1, MainGPU: -1}, Declared: "test [models.echo]"}}, opts)
	t.Cleanup(func() { catalog.Close() })
	h := httpapi.New(&api.InferenceService{Models: catalog, NodeID: "self"}, &api.ModelService{Models: catalog},
		&api.NodeService{Models: catalog, NodeID: "self"})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, catalog
}

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func TestChatCompletion(t *testing.T) {
	base := serve(t)
	res := post(t, base+"/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"hello there friend"}],"max_tokens":2}`)
	var out struct {
		Object  string `json:"object"`
		Choices []struct {
			Message      struct{ Role, Content string } `json:"message"`
			FinishReason string                         `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 {
		t.Fatalf("status %d, %v", res.StatusCode, err)
	}
	if out.Object != "chat.completion" || len(out.Choices) != 1 || out.Choices[0].Message.Role != "assistant" ||
		out.Choices[0].Message.Content != " hello there" || out.Choices[0].FinishReason != "length" ||
		out.Usage.PromptTokens != 3 || out.Usage.CompletionTokens != 2 {
		t.Fatalf("response %+v", out)
	}
	if res.Header.Get("Syn4pse-Served-By") != "self" {
		t.Errorf("served by %q", res.Header.Get("Syn4pse-Served-By"))
	}
}

func TestChatCompletionStream(t *testing.T) {
	base := serve(t)
	res := post(t, base+"/v1/chat/completions", `{"model":"echo","stream":true,"messages":[{"role":"user","content":"one two three"}]}`)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, headers %v", res.StatusCode, res.Header)
	}
	var text strings.Builder
	var last string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		last = line
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not an SSE data line", line)
		}
		if data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatal(err)
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	if text.String() != " one two three" || last != "data: [DONE]" {
		t.Fatalf("streamed %q, last line %q", text.String(), last)
	}
}

func TestBadRequests(t *testing.T) {
	base := serve(t)
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"unknown model", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "model_not_found"},
		{"broken JSON", `{"model":`, 400, ""},
		{"no messages", `{"model":"echo","messages":[]}`, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, base+"/v1/chat/completions", tt.body)
			var out struct {
				Error struct {
					Message string `json:"message"`
					Code    string `json:"code"`
				} `json:"error"`
			}
			if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status || out.Error.Message == "" || (tt.code != "" && out.Error.Code != tt.code) {
				t.Fatalf("status %d, error %+v; want %d %s", res.StatusCode, out.Error, tt.status, tt.code)
			}
		})
	}
	// The server still serves after bad input.
	if res := post(t, base+"/v1/completions", `{"model":"echo","prompt":"still here"}`); res.StatusCode != 200 {
		t.Fatalf("after bad requests: %d", res.StatusCode)
	}
}

func TestModelsAndHealth(t *testing.T) {
	base := serve(t)
	res, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Object string                `json:"object"`
		Data   []struct{ ID string } `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || out.Object != "list" || len(out.Data) != 1 || out.Data[0].ID != "echo" {
		t.Fatalf("/v1/models: %+v %v", out, err)
	}
	health, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	health.Body.Close()
	if health.StatusCode != 200 {
		t.Fatalf("/healthz: %d", health.StatusCode)
	}
}

// reply is an HTTP response read whole, for requests made off the test's goroutine.
type reply struct {
	status     int
	retryAfter string
	body       string
	err        error
}

func postAsync(url, body string) <-chan reply {
	out := make(chan reply, 1)
	go func() {
		res, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			out <- reply{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		out <- reply{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After"), body: string(b), err: err}
	}()
	return out
}

func TestFullQueueAnswers503AtOnce(t *testing.T) {
	eng := &enginetest.Engine{Gate: make(chan struct{})}
	base, catalog := serveWith(t, eng, models.Options{MaxQueue: 1})
	chat := `{"model":"echo","messages":[{"role":"user","content":"held"}]}`
	running := postAsync(base+"/v1/chat/completions", chat)
	modelstest.WaitEngine(t, catalog, "echo", 1, 0)
	queued := postAsync(base+"/v1/chat/completions", chat)
	modelstest.WaitEngine(t, catalog, "echo", 1, 1)

	// The model's slot and its one queue place are taken: more requests are refused while the
	// two still wait at the gate.
	refused := []struct{ path, body string }{
		{"/v1/chat/completions", chat},
		{"/v1/chat/completions", `{"model":"echo","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/completions", `{"model":"echo","prompt":"hi"}`},
	}
	for _, r := range refused {
		res := post(t, base+r.path, r.body)
		var out struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
				Code    string `json:"code"`
			} `json:"error"`
		}
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatalf("%s: %v", r.body, err)
		}
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "1" ||
			out.Error.Code != "model_busy" || out.Error.Type != "server_error" || !strings.Contains(out.Error.Message, "retry later") {
			t.Fatalf("%s: status %d, Retry-After %q, error %+v; want 503, Retry-After 1, model_busy",
				r.body, res.StatusCode, res.Header.Get("Retry-After"), out.Error)
		}
	}
	select {
	case r := <-running:
		t.Fatalf("the running request ended at the gate: %+v", r)
	case r := <-queued:
		t.Fatalf("the queued request ended: %+v", r)
	default:
	}

	close(eng.Gate)
	for _, ch := range []<-chan reply{running, queued} {
		if r := <-ch; r.err != nil || r.status != http.StatusOK || !strings.Contains(r.body, " held") {
			t.Fatalf("a held request after the gate opened: %+v", r)
		}
	}
	if res := post(t, base+"/v1/completions", `{"model":"echo","prompt":"still here"}`); res.StatusCode != http.StatusOK {
		t.Fatalf("after the queue emptied: %d", res.StatusCode)
	}
}
