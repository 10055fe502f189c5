package ollamaapi

import (
	"encoding/json"
	"testing"

	ollama "github.com/ollama/ollama/api"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Tool calls cross between Ollama's shape and ours without losing the arguments or their order.
func TestToolCallsBothWays(t *testing.T) {
	var args ollama.ToolCallFunctionArguments
	if err := json.Unmarshal([]byte(`{"city":"Lima","days":3,"units":{"metric":true}}`), &args); err != nil {
		t.Fatal(err)
	}
	in := []ollama.ToolCall{{ID: "call_1", Function: ollama.ToolCallFunction{Name: "forecast", Arguments: args}}}
	ours, err := toolCalls(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.ToolCall{Id: "call_1", Name: "forecast", Arguments: `{"city":"Lima","days":3,"units":{"metric":true}}`}
	if len(ours) != 1 || ours[0].GetId() != want.GetId() || ours[0].GetName() != want.GetName() || ours[0].GetArguments() != want.GetArguments() {
		t.Fatalf("ours %v, want %v", ours, want)
	}
	back := ollamaToolCalls(ours)
	got, _ := json.Marshal(back)
	orig, _ := json.Marshal([]ollama.ToolCall{{ID: "call_1", Function: ollama.ToolCallFunction{Index: 0, Name: "forecast", Arguments: args}}})
	if string(got) != string(orig) {
		t.Errorf("back %s, want %s", got, orig)
	}
	// Arguments that are not an object (a broken call from a peer) become an empty object.
	if calls := ollamaToolCalls([]*pb.ToolCall{{Name: "f", Arguments: "not json"}}); len(calls) != 1 || calls[0].Function.Arguments.Len() != 0 {
		t.Errorf("broken arguments: %+v", calls)
	}
}

func TestToolsKeepTheirSchema(t *testing.T) {
	var tool ollama.Tool
	if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"forecast","description":"Weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}}}`), &tool); err != nil {
		t.Fatal(err)
	}
	out, err := tools(ollama.Tools{tool})
	if err != nil || len(out) != 1 || out[0].GetName() != "forecast" || out[0].GetDescription() != "Weather" {
		t.Fatalf("tools %v %v", out, err)
	}
	var schema struct {
		Required   []string
		Properties map[string]struct{ Type string }
	}
	if err := json.Unmarshal([]byte(out[0].GetParametersJson()), &schema); err != nil || schema.Required[0] != "city" || schema.Properties["city"].Type != "string" {
		t.Errorf("schema %s: %v", out[0].GetParametersJson(), err)
	}
}
