package node_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node/config"
)

// qwenDecl declares "qwen": the tiny random model with Qwen 2.5's real chat template, which
// renders tools and tool calls.
func qwenDecl(t *testing.T) config.Model {
	t.Helper()
	template, err := os.ReadFile("../engine/chattemplate/testdata/qwen2.5-7b-instruct.jinja")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "qwen.gguf")
	if err := tinygguf.Write(path, tinygguf.Options{Arch: "llama", Seed: 3, ChatTemplate: string(template)}); err != nil {
		t.Fatal(err)
	}
	decl := tinyDecl("qwen")
	decl.Path, decl.ContextLength = path, 2048
	return decl
}

// TestOpenAIClientToolCalls drives tool calling with the official SDK over a random model whose
// chat template is Qwen 2.5's: tool_choice names the function, so the grammar makes the noise a
// valid call, which the SDK reads whole and streamed, and which goes back into the history.
func TestOpenAIClientToolCalls(t *testing.T) {
	n := startNode(t, qwenDecl(t))
	client := openai.NewClient(option.WithBaseURL("http://"+n.HTTPAddr()+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))

	params := openai.ChatCompletionNewParams{
		Model:    "qwen",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Use metric units.")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name: "set_units", Description: openai.String("Set the units"),
			Parameters: shared.FunctionParameters{
				"type": "object", "additionalProperties": false, "required": []string{"metric", "scale"},
				"properties": map[string]any{"metric": map[string]any{"type": "boolean"}, "scale": map[string]any{"enum": []string{"c", "f"}}},
			},
		})},
		ToolChoice: openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "set_units"}),
		MaxTokens:  openai.Int(200),
		Seed:       openai.Int(5),
	}
	res, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	msg := res.Choices[0].Message
	if res.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 1 || msg.Content != "" {
		t.Fatalf("choice %+v", res.Choices[0])
	}
	call := msg.ToolCalls[0]
	checkUnitsCall(t, call.ID, call.Function.Name, call.Function.Arguments)

	stream := client.Chat.Completions.NewStreaming(t.Context(), params)
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" || len(acc.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("accumulated %+v", acc.ChatCompletion)
	}
	streamed := acc.Choices[0].Message.ToolCalls[0]
	checkUnitsCall(t, streamed.ID, streamed.Function.Name, streamed.Function.Arguments)
	if streamed.Function.Arguments != call.Function.Arguments {
		t.Errorf("same seed: streamed arguments %s, whole %s", streamed.Function.Arguments, call.Function.Arguments)
	}

	// The call and its result go back into the history; tool_choice auto lets the model answer.
	params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage(`{"ok":true}`, call.ID))
	params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("auto")}
	params.MaxTokens = openai.Int(4)
	next, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil || next.Usage.PromptTokens <= res.Usage.PromptTokens || next.Usage.CompletionTokens == 0 {
		t.Fatalf("round trip: %+v, %v", next, err)
	}
}

func checkUnitsCall(t *testing.T, id, name, arguments string) {
	t.Helper()
	var args struct {
		Metric *bool   `json:"metric"`
		Scale  *string `json:"scale"`
	}
	if err := json.Unmarshal([]byte(arguments), &args); err != nil || id == "" || name != "set_units" ||
		args.Metric == nil || args.Scale == nil || (*args.Scale != "c" && *args.Scale != "f") {
		t.Fatalf("call %s %s(%s): %v", id, name, arguments, err)
	}
}
