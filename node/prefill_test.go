package node_test

import (
	"errors"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestAssistantPrefill: continue_final_message leaves the final assistant turn open, so the
// model continues its text: the same greedy output as a raw completion of the rendered
// conversation cut after that text (the generated model's template is ChatML). A request whose
// last turn is not the assistant's is refused with 400.
func TestAssistantPrefill(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	client := openaiClient("http://" + n.HTTPAddr())
	params := openai.ChatCompletionNewParams{Model: "tiny", MaxTokens: openai.Int(8), Temperature: openai.Float(0),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell a story."), openai.AssistantMessage("Once upon a")}}
	chat, err := client.Chat.Completions.New(t.Context(), params, option.WithJSONSet("continue_final_message", true))
	if err != nil {
		t.Fatal(err)
	}
	comp, err := client.Completions.New(t.Context(), openai.CompletionNewParams{Model: "tiny", MaxTokens: openai.Int(8), Temperature: openai.Float(0),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("<|im_start|>user\nTell a story.<|im_end|>\n<|im_start|>assistant\nOnce upon a")}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := chat.Choices[0].Message.Content, comp.Choices[0].Text; got != want || got == "" || chat.Usage.PromptTokens != comp.Usage.PromptTokens {
		t.Fatalf("prefilled chat %q (%d prompt tokens), completion of the open turn %q (%d)", got, chat.Usage.PromptTokens, want, comp.Usage.PromptTokens)
	}
	// Without the flag the reply is a new turn after the assistant's: another prompt.
	closed, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil || closed.Usage.PromptTokens == chat.Usage.PromptTokens {
		t.Fatalf("closed turn: %+v, %v", closed.Usage, err)
	}

	params.Messages = params.Messages[:1]
	_, err = client.Chat.Completions.New(t.Context(), params, option.WithJSONSet("continue_final_message", true))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
		t.Fatalf("continuing a user turn: %v, want 400", err)
	}
}
