package node_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// TestOpenAIClientLogprobs checks that the official SDK reads chat logprobs, whole and streamed:
// one per token, ≤ 0, the greedy choice at least as likely as every alternative, as many
// alternatives as asked, sorted.
func TestOpenAIClientLogprobs(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	client := openaiClient("http://" + n.HTTPAddr())
	params := openai.ChatCompletionNewParams{
		Model:       "tiny",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say something.")},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0),
		Logprobs:    openai.Bool(true),
		TopLogprobs: openai.Int(3),
	}
	res, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	content := res.Choices[0].Logprobs.Content
	if len(content) != int(res.Usage.CompletionTokens) {
		t.Fatalf("%d logprobs for %d tokens", len(content), res.Usage.CompletionTokens)
	}
	var spelled []byte
	for i, lp := range content {
		for _, b := range lp.Bytes {
			spelled = append(spelled, byte(b))
		}
		if lp.Logprob > 0 || len(lp.TopLogprobs) != 3 {
			t.Fatalf("token %d: %+v", i, lp)
		}
		for j, alt := range lp.TopLogprobs {
			if alt.Logprob > lp.Logprob || j > 0 && alt.Logprob > lp.TopLogprobs[j-1].Logprob {
				t.Fatalf("token %d: %q (%v), alternatives %+v", i, lp.Token, lp.Logprob, lp.TopLogprobs)
			}
		}
	}
	if string(spelled) != res.Choices[0].Message.Content {
		t.Fatalf("tokens spell %q, content is %q", spelled, res.Choices[0].Message.Content)
	}

	stream := client.Chat.Completions.NewStreaming(t.Context(), params)
	var streamed []openai.ChatCompletionTokenLogprob
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			streamed = append(streamed, c.Logprobs.Content...)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(streamed) != len(content) {
		t.Fatalf("streamed %d logprobs, whole %d", len(streamed), len(content))
	}
	for i := range streamed {
		if streamed[i].Token != content[i].Token || streamed[i].Logprob != content[i].Logprob {
			t.Fatalf("token %d: streamed %+v, whole %+v", i, streamed[i], content[i])
		}
	}
}

// TestCompletionLogprobs checks the legacy completions' logprobs object.
func TestCompletionLogprobs(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	body := `{"model":"tiny","prompt":"Once upon a time","max_tokens":6,"ignore_eos":true,"temperature":0,"logprobs":2}`
	var res struct {
		Choices []struct {
			Text     string `json:"text"`
			Logprobs struct {
				Tokens        []string             `json:"tokens"`
				TokenLogprobs []float32            `json:"token_logprobs"`
				TopLogprobs   []map[string]float32 `json:"top_logprobs"`
				TextOffset    []int                `json:"text_offset"`
			} `json:"logprobs"`
		} `json:"choices"`
	}
	resp, err := http.Post("http://"+n.HTTPAddr()+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	lp := res.Choices[0].Logprobs
	if len(lp.Tokens) != 6 || len(lp.TokenLogprobs) != 6 || len(lp.TopLogprobs) != 6 || len(lp.TextOffset) != 6 || lp.TextOffset[0] != 0 {
		t.Fatalf("logprobs %+v", lp)
	}
	for i, top := range lp.TopLogprobs {
		if len(top) == 0 || len(top) > 2 || lp.TokenLogprobs[i] > 0 {
			t.Fatalf("token %d: %v %v", i, lp.TokenLogprobs[i], top)
		}
	}
}

// TestChoicesN checks n: three greedy choices are equal and indexed, usage counts the prompt
// once; streamed, chunks carry both choices' indices.
func TestChoicesN(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	client := openaiClient("http://" + n.HTTPAddr())
	params := openai.ChatCompletionNewParams{
		Model:       "tiny",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say something.")},
		MaxTokens:   openai.Int(6),
		Temperature: openai.Float(0),
		N:           openai.Int(3),
	}
	res, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 3 {
		t.Fatalf("%d choices", len(res.Choices))
	}
	for i, c := range res.Choices {
		if int(c.Index) != i || c.Message.Content != res.Choices[0].Message.Content || c.Message.Content == "" {
			t.Fatalf("choice %d: %+v; first %q", i, c, res.Choices[0].Message.Content)
		}
	}
	if res.Usage.CompletionTokens != 18 || res.Usage.TotalTokens != res.Usage.PromptTokens+18 {
		t.Fatalf("usage %+v", res.Usage)
	}

	body := `{"model":"tiny","stream":true,"n":2,"max_tokens":4,"ignore_eos":true,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post("http://"+n.HTTPAddr()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	finished := map[int]bool{}
	content := map[int]int{}
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		data, ok := strings.CutPrefix(scanner.Text(), "data: {")
		if !ok {
			continue
		}
		var chunk struct {
			Choices []struct {
				Index int `json:"index"`
				Delta struct {
					Content *string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte("{"+data), &chunk); err != nil {
			t.Fatal(err)
		}
		for _, c := range chunk.Choices {
			if c.Delta.Content != nil && *c.Delta.Content != "" {
				content[c.Index]++
			}
			if c.FinishReason != nil {
				finished[c.Index] = true
			}
		}
	}
	if len(finished) != 2 || !finished[0] || !finished[1] || content[0] == 0 || content[1] == 0 {
		t.Fatalf("finished %v, content chunks by index %v", finished, content)
	}
}
