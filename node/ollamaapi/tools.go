package ollamaapi

import (
	"encoding/json"
	"fmt"

	ollama "github.com/ollama/ollama/api"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Tool calling in Ollama's shapes: its tools and tool_calls map to ours one to one, arguments
// travel as JSON objects.

// tools converts a chat request's tools.
func tools(in ollama.Tools) ([]*pb.Tool, error) {
	var out []*pb.Tool
	for i, t := range in {
		params, err := json.Marshal(t.Function.Parameters)
		if err != nil {
			return nil, fmt.Errorf("tools[%d].function.parameters: %v", i, err)
		}
		out = append(out, &pb.Tool{Name: t.Function.Name, Description: t.Function.Description, ParametersJson: string(params)})
	}
	return out, nil
}

// toolCalls converts the calls of an assistant message in the history.
func toolCalls(in []ollama.ToolCall) ([]*pb.ToolCall, error) {
	var out []*pb.ToolCall
	for i, c := range in {
		args, err := json.Marshal(c.Function.Arguments)
		if err != nil {
			return nil, fmt.Errorf("tool_calls[%d].function.arguments: %v", i, err)
		}
		out = append(out, &pb.ToolCall{Id: c.ID, Name: c.Function.Name, Arguments: string(args)})
	}
	return out, nil
}

// ollamaToolCalls converts the calls a reply made.
func ollamaToolCalls(in []*pb.ToolCall) []ollama.ToolCall {
	var out []ollama.ToolCall
	for i, c := range in {
		var args ollama.ToolCallFunctionArguments
		if err := json.Unmarshal([]byte(c.GetArguments()), &args); err != nil {
			args = ollama.NewToolCallFunctionArguments()
		}
		out = append(out, ollama.ToolCall{ID: c.GetId(), Function: ollama.ToolCallFunction{Index: i, Name: c.GetName(), Arguments: args}})
	}
	return out
}
