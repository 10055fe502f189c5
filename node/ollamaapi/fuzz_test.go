package ollamaapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/ollamaapi"
)

// fuzzRoutes are the JSON request bodies of Ollama's API that reach the inference service; the
// fuzzer picks one by index. /api/pull (which fetches from the network) is left out.
var fuzzRoutes = []string{"/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show"}

// FuzzOllamaRequest sends fuzzed bodies through the real handler over a node that holds no
// models: it must never panic nor answer 500, a refusal is Ollama's {"error": "..."} and a 200
// (a load-only request that unloads nothing) is JSON or JSON lines.
func FuzzOllamaRequest(f *testing.F) {
	seeds := []struct {
		route uint8
		body  string
	}{
		{0, `{"model":"m","messages":[{"role":"user","content":"hello","images":["iVBORw0KGgo="]}],"stream":false}`},
		{0, `{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","content":"42"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}]}`},
		{0, `{"model":"m","messages":[{"role":"user","content":"x"}],"format":"json","options":{"temperature":0.5,"top_k":3,"num_predict":4,"stop":["a"],"seed":7},"keep_alive":"10m"}`},
		{0, `{"model":"m","messages":[],"keep_alive":0}`},
		{1, `{"model":"m","prompt":"why is the sky blue","system":"be brief","stream":true,"format":{"type":"object"}}`},
		{1, `{"model":"m","prompt":"raw","raw":true,"options":{"num_ctx":"big","mirostat":1}}`},
		{1, `{"model":"m","keep_alive":-1}`},
		{2, `{"model":"e","input":["a","b"],"truncate":false,"dimensions":4}`},
		{3, `{"model":"e","prompt":"text"}`},
		{4, `{"model":"m","verbose":true}`},
		{0, ``},
		{1, `{"prompt":`},
	}
	for _, s := range seeds {
		f.Add(s.route, []byte(s.body))
	}

	var registry engine.Registry
	catalog := models.New(&registry, nil, models.Options{})
	f.Cleanup(func() { catalog.Close() })
	h := ollamaapi.New(&api.InferenceService{Models: catalog, NodeID: "self"}, &api.ModelService{Models: catalog},
		&api.NodeService{Models: catalog, NodeID: "self", Version: "fuzz"})

	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkResponse(t, path, rec)
	})
}

func checkResponse(t *testing.T, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	code, body := rec.Code, rec.Body.Bytes()
	switch {
	case code == http.StatusOK:
		// Every line (one for a whole response, several for a stream) is a JSON object.
		lines := bufio.NewScanner(bytes.NewReader(body))
		lines.Buffer(nil, len(body)+1)
		for lines.Scan() {
			var v map[string]any
			if err := json.Unmarshal(lines.Bytes(), &v); err != nil {
				t.Fatalf("%s: 200 with a line that is not a JSON object (%v): %q", path, err, body)
			}
			if msg, ok := v["error"]; ok {
				t.Fatalf("%s: 200 over a node without models, with error %v", path, msg)
			}
		}
	case code < 400 || code >= 600 || code == http.StatusInternalServerError:
		t.Fatalf("%s: status %d over a node without models, body %q", path, code, body)
	default:
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s: status %d with Content-Type %q", path, code, ct)
		}
		var out struct {
			Error *string `json:"error"`
		}
		if err := json.Unmarshal(body, &out); err != nil || out.Error == nil || *out.Error == "" {
			t.Fatalf("%s: status %d body is not {\"error\": \"...\"} (%v): %q", path, code, err, body)
		}
	}
}
