package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/httpapi"
	"github.com/ekisa-team/syn4pse/node/models"
)

// fuzzRoutes are the JSON request bodies the OpenAI API decodes; the fuzzer picks one by index.
// Pulling (which fetches from the network) is left out.
var fuzzRoutes = []string{
	"/v1/chat/completions",
	"/v1/completions",
	"/v1/embeddings",
	"/v1/rerank",
	"/v1/audio/speech",
}

// FuzzOpenAIRequest sends fuzzed bodies through the real handler over a node that holds no
// models, so every request is decoded and validated and then refused: it must never panic, and
// must answer a client error (or 404/503 from the empty catalog) as OpenAI's JSON error object.
// A 500 would mean client input reached an internal failure.
func FuzzOpenAIRequest(f *testing.F) {
	seeds := []struct {
		route uint8
		body  string
	}{
		{0, `{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":2}`},
		{0, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}],"stream":true,"stream_options":{"include_usage":true}}`},
		{0, `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}]}],"modalities":["text","audio"],"audio":{"voice":"alloy","format":"wav"}}`},
		{0, `{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto"}`},
		{0, `{"model":"m","messages":[{"role":"user","content":"x"}],"n":3,"logprobs":true,"top_logprobs":5,"seed":-1,"stop":["a","b"],"keep_alive":"5m","response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}}}`},
		{0, `{"model":"m","messages":[],"temperature":1e39,"top_k":-1,"max_tokens":-5}`},
		{1, `{"model":"m","prompt":"once upon","max_tokens":4,"logprobs":2,"echo":true,"stream":true}`},
		{1, `{"model":"m","prompt":["a","b"],"stop":"x","keep_alive":-1}`},
		{2, `{"model":"e","input":["one","two"],"encoding_format":"base64","dimensions":8}`},
		{2, `{"model":"e","input":[[1,2,3]],"encoding_format":"float"}`},
		{3, `{"model":"r","query":"q","documents":["a",{"text":"b"}],"top_n":1,"return_documents":true}`},
		{4, `{"model":"t","input":"hello","voice":"alloy","response_format":"wav","speed":1.5}`},
		{0, ``},
		{0, `{"model":`},
		{0, `[]`},
	}
	for _, s := range seeds {
		f.Add(s.route, []byte(s.body))
	}

	h := handlerWithoutModels(f)

	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkErrorResponse(t, path, rec)
	})
}

// handlerWithoutModels is the real HTTP API over a node that holds no models: every request is
// decoded and validated, then refused.
func handlerWithoutModels(f *testing.F) *httpapi.Handler {
	var registry engine.Registry
	catalog := models.New(&registry, nil, models.Options{})
	f.Cleanup(func() { catalog.Close() })
	return httpapi.New(&api.InferenceService{Models: catalog, NodeID: "self"}, &api.ModelService{Models: catalog},
		&api.NodeService{Models: catalog, NodeID: "self"})
}

// checkErrorResponse asserts that rec is a refusal a client can read: a 4xx or a 503 (no model
// can serve), never a 500, with a JSON body holding OpenAI's error object.
func checkErrorResponse(t *testing.T, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	code := rec.Code
	if code < 400 || code >= 600 || code == http.StatusInternalServerError {
		t.Fatalf("%s: status %d over a node without models, body %q", path, code, rec.Body.Bytes())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: status %d with Content-Type %q", path, code, ct)
	}
	var out struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s: status %d body is not JSON (%v): %q", path, code, err, rec.Body.Bytes())
	}
	if out.Error == nil || out.Error.Message == "" || out.Error.Type == "" {
		t.Fatalf("%s: status %d body has no error object with a message and type: %q", path, code, rec.Body.Bytes())
	}
}

// fuzzBoundary is the multipart boundary of FuzzTranscriptionUpload's bodies.
const fuzzBoundary = "syn4pse-fuzz"

// multipartBody is a transcription upload: the fields in order, then the file part.
func multipartBody(fields [][2]string, file []byte) []byte {
	var b bytes.Buffer
	for _, f := range fields {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", fuzzBoundary, f[0], f[1])
	}
	if file != nil {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n", fuzzBoundary)
		b.Write(file)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", fuzzBoundary)
	return b.Bytes()
}

// FuzzTranscriptionUpload sends fuzzed multipart bodies to /v1/audio/transcriptions over a node
// without models: the form is read and checked (fields, sizes, formats) and the request refused,
// as OpenAI's JSON error and never a 500 or a panic. The audio decoders have their own target
// (internal/audio FuzzDecode).
func FuzzTranscriptionUpload(f *testing.F) {
	wav := []byte("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00")
	for _, body := range [][]byte{
		multipartBody([][2]string{{"model", "s"}}, wav),
		multipartBody([][2]string{{"model", "s"}, {"language", "en"}, {"prompt", "hello"}, {"temperature", "0.2"}, {"response_format", "verbose_json"}, {"timestamp_granularities[]", "word"}}, wav),
		multipartBody([][2]string{{"model", "s"}, {"stream", "true"}, {"response_format", "text"}}, wav),
		multipartBody([][2]string{{"model", "s"}, {"response_format", "srt"}, {"temperature", "NaN"}}, []byte("not audio")),
		multipartBody([][2]string{{"model", ""}}, nil),
		multipartBody(nil, wav),
		[]byte("--" + fuzzBoundary + "\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nRIFF"),
		[]byte("--" + fuzzBoundary + "--"),
		{},
	} {
		f.Add(body)
	}
	h := handlerWithoutModels(f)

	f.Fuzz(func(t *testing.T, body []byte) {
		const path = "/v1/audio/transcriptions"
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+fuzzBoundary)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkErrorResponse(t, path, rec)
	})
}
