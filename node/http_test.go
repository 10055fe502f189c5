package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

func openaiClient(baseURL string) openai.Client {
	// ignore_eos (a llama.cpp server extra) keeps the random-weight model from ending at once.
	return openai.NewClient(option.WithBaseURL(baseURL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0),
		option.WithJSONSet("ignore_eos", true))
}

func TestOpenAIClientChat(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	client := openaiClient("http://" + n.HTTPAddr())
	params := openai.ChatCompletionNewParams{
		Model: "tiny",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are terse."),
			openai.UserMessage("Say something."),
		},
		MaxTokens: openai.Int(10),
		Seed:      openai.Int(42),
	}

	res, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatalf("non-streaming: %v", err)
	}
	if len(res.Choices) != 1 || res.Choices[0].Message.Role != "assistant" || res.Usage.CompletionTokens == 0 ||
		res.Usage.TotalTokens != res.Usage.PromptTokens+res.Usage.CompletionTokens || res.Object != "chat.completion" {
		t.Fatalf("response = %+v", res)
	}
	want := res.Choices[0].Message.Content

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(t.Context(), params)
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("streaming: %v", err)
	}
	if chunks < 3 || len(acc.Choices) != 1 {
		t.Fatalf("%d chunks, accumulated %+v", chunks, acc.ChatCompletion)
	}
	if got := acc.Choices[0].Message.Content; got != want {
		t.Fatalf("stream with the same seed gave %q, non-streaming %q", got, want)
	}
	if acc.Usage.CompletionTokens != res.Usage.CompletionTokens || acc.Choices[0].FinishReason == "" {
		t.Fatalf("stream usage %+v finish %q", acc.Usage, acc.Choices[0].FinishReason)
	}

	models, err := client.Models.List(t.Context())
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "tiny" {
		t.Fatalf("models = %+v, %v", models, err)
	}

	comp, err := client.Completions.New(t.Context(), openai.CompletionNewParams{
		Model:     "tiny",
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(5),
	})
	if err != nil || len(comp.Choices) != 1 || comp.Usage.CompletionTokens == 0 {
		t.Fatalf("completion = %+v, %v", comp, err)
	}
}

func TestOpenAIClientErrors(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	client := openaiClient("http://" + n.HTTPAddr())
	_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model: "nope", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || !strings.Contains(apiErr.Message, "tiny") {
		t.Fatalf("unknown model: %v", err)
	}
}

// TestRawSSE checks the wire format as curl sees it.
func TestRawSSE(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	body := `{"model":"tiny","stream":true,"max_tokens":6,"ignore_eos":true,"messages":[{"role":"user","content":"hi"}]}`
	res, err := http.Post("http://"+n.HTTPAddr()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" || res.Header.Get("Syn4pse-Served-By") == "" {
		t.Fatalf("status %d, headers %v", res.StatusCode, res.Header)
	}
	var lines []string
	scanner := bufio.NewScanner(res.Body)
	for scanner.Scan() {
		lines = append(lines, scanner.Text())
	}
	// Events are "data: {json}" lines each followed by a blank line, ending with [DONE].
	if len(lines) < 6 || lines[len(lines)-2] != "data: [DONE]" || lines[len(lines)-1] != "" {
		t.Fatalf("stream:\n%s", strings.Join(lines, "\n"))
	}
	var sawRole, sawFinish bool
	for i := 0; i < len(lines)-2; i += 2 {
		if lines[i+1] != "" || !strings.HasPrefix(lines[i], "data: {") {
			t.Fatalf("line %d: %q then %q", i, lines[i], lines[i+1])
		}
		var chunk struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			Model   string `json:"model"`
			Choices []struct {
				Index int `json:"index"`
				Delta struct {
					Role    *string `json:"role"`
					Content *string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[i], "data: ")), &chunk); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(chunk.ID, "chatcmpl-") || chunk.Object != "chat.completion.chunk" || chunk.Model != "tiny" || chunk.Created == 0 || len(chunk.Choices) != 1 {
			t.Fatalf("chunk %s", lines[i])
		}
		c := chunk.Choices[0]
		if i == 0 && (c.Delta.Role == nil || *c.Delta.Role != "assistant") {
			t.Fatalf("first chunk lacks the role: %s", lines[i])
		}
		sawRole = sawRole || c.Delta.Role != nil
		if c.FinishReason != nil {
			sawFinish = true
			if *c.FinishReason != "length" && *c.FinishReason != "stop" {
				t.Fatalf("finish_reason %q", *c.FinishReason)
			}
		}
	}
	if !sawRole || !sawFinish {
		t.Fatalf("role %v finish %v", sawRole, sawFinish)
	}
}

func TestHTTPBadInput(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	base := "http://" + n.HTTPAddr()
	tests := []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"malformed json", "/v1/chat/completions", `{"model": "tiny", "messages": [`, 400, "not valid JSON"},
		{"empty body", "/v1/chat/completions", ``, 400, "empty"},
		{"unknown model", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "available: tiny"},
		{"prompt too long", "/v1/completions", `{"model":"tiny","prompt":"` + strings.Repeat("hello world ", 300) + `"}`, 400, "256"},
		{"stream prompt too long", "/v1/completions", `{"model":"tiny","stream":true,"prompt":"` + strings.Repeat("hello world ", 300) + `"}`, 400, "256"},
		{"bad temperature", "/v1/chat/completions", `{"model":"tiny","temperature":-1,"messages":[{"role":"user","content":"hi"}]}`, 400, "temperature"},
		{"n > 8", "/v1/chat/completions", `{"model":"tiny","n":9,"messages":[{"role":"user","content":"hi"}]}`, 400, "n = 9"},
		{"top_logprobs > 20", "/v1/chat/completions", `{"model":"tiny","logprobs":true,"top_logprobs":21,"messages":[{"role":"user","content":"hi"}]}`, 400, "top_logprobs"},
		{"image part", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "image_url"},
		{"audio part to a text model", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"What is said?"},{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}]}]}`, 400, "mmproj"},
		{"audio part in an unknown format", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"aiff"}}]}]}`, 400, "wav, mp3 or flac"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := http.Post(base+tt.path, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var e struct {
				Error struct {
					Message string `json:"message"`
					Type    string `json:"type"`
				} `json:"error"`
			}
			if err := json.NewDecoder(res.Body).Decode(&e); err != nil {
				t.Fatalf("error body: %v", err)
			}
			if res.StatusCode != tt.status || !strings.Contains(e.Error.Message, tt.msg) || e.Error.Type == "" {
				t.Fatalf("status %d %+v, want %d containing %q", res.StatusCode, e, tt.status, tt.msg)
			}
		})
	}
}

func TestHTTPClientDisconnectStopsGeneration(t *testing.T) {
	decl := tinyDecl("tiny")
	decl.ContextLength = 2048 // an unstopped generation would run ~2000 tokens
	n := startNode(t, decl)
	models := pb.NewModelServiceClient(grpcConn(t, n))

	ctx, cancel := context.WithCancel(t.Context())
	body := `{"model":"tiny","stream":true,"ignore_eos":true,"prompt":"Once upon a time"}`
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+n.HTTPAddr()+"/v1/completions", strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil { // generating now
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()

	// Wait for the abandoned request to leave its slot, then count what it generated.
	var stats *pb.ModelStats
	for {
		list, err := models.ListModels(t.Context(), &pb.ListModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		stats = list.GetModels()[0].GetStats()
		if stats.GetActiveRequests() == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if stats.GetRequestsTotal() != 1 || stats.GetGeneratedTokensTotal() >= 1000 {
		t.Fatalf("after the client left: %v; generation did not stop", stats)
	}
	t.Logf("abandoned generation stopped after %d tokens", stats.GetGeneratedTokensTotal())

	// The node serves the next request.
	client := openaiClient("http://" + n.HTTPAddr())
	comp, err := client.Completions.New(t.Context(), openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Next")}, MaxTokens: openai.Int(3),
	})
	if err != nil || comp.Usage.CompletionTokens == 0 {
		t.Fatalf("next request: %+v, %v", comp, err)
	}
}

func TestNativeModelRoutes(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	base := "http://" + n.HTTPAddr()
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := call("POST", "/api/models/tiny/load", `{"keep_alive": -1}`); code != 200 || !strings.Contains(body, `"keep_alive":"-1"`) {
		t.Fatalf("load: %d %s", code, body)
	}
	if code, body := call("GET", "/api/ps", ""); code != 200 || !strings.Contains(body, `"name":"tiny"`) {
		t.Fatalf("ps: %d %s", code, body)
	}
	if code, body := call("POST", "/api/models/tiny/unload", ""); code != 200 {
		t.Fatalf("unload: %d %s", code, body)
	}
	if code, body := call("GET", "/api/ps", ""); code != 200 || strings.Contains(body, `"name":"tiny"`) {
		t.Fatalf("ps after unload: %d %s", code, body)
	}
	if code, body := call("DELETE", "/api/models/tiny", ""); code != 400 || !strings.Contains(body, "remove it there") {
		t.Fatalf("delete a declared model: %d %s", code, body)
	}
	if code, body := call("POST", "/api/models/pull", `{"name":"y","source":"ftp://nowhere/y.gguf"}`); code != 400 || !strings.Contains(body, "hf://") {
		t.Fatalf("pull from a bad source: %d %s", code, body)
	}
	if code, body := call("POST", "/api/models/nope/load", ""); code != 404 {
		t.Fatalf("load an unknown model: %d %s", code, body)
	}
}
