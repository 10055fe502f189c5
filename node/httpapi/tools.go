package httpapi

import (
	"encoding/json"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// chatTool is one entry of a chat request's "tools".
type chatTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// toolCall is a call as OpenAI writes it in messages, and, with Index, in streamed deltas.
type toolCall struct {
	Index    *int           `json:"index,omitempty"`
	ID       string         `json:"id,omitempty"`
	Type     string         `json:"type,omitempty"`
	Function toolCallFields `json:"function"`
}

type toolCallFields struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// toolsToProto converts "tools" and "tool_choice": "auto", "none", "required" or
// {"type": "function", "function": {"name": ...}}.
func toolsToProto(tools []chatTool, choice json.RawMessage, req *pb.ChatRequest) error {
	for i, t := range tools {
		if t.Type != "" && t.Type != "function" {
			return status.Errorf(codes.InvalidArgument, "tools[%d].type %q: want \"function\"", i, t.Type)
		}
		params := ""
		if len(t.Function.Parameters) > 0 && string(t.Function.Parameters) != "null" {
			params = string(t.Function.Parameters)
		}
		req.Tools = append(req.Tools, &pb.Tool{Name: t.Function.Name, Description: t.Function.Description, ParametersJson: params})
	}
	if len(choice) == 0 || string(choice) == "null" {
		return nil
	}
	var mode string
	if err := json.Unmarshal(choice, &mode); err == nil {
		req.ToolChoice = &pb.ToolChoice{Mode: mode}
		return nil
	}
	var named struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(choice, &named); err != nil || named.Function.Name == "" {
		return status.Error(codes.InvalidArgument, `tool_choice: want "auto", "none", "required" or {"type": "function", "function": {"name": ...}}`)
	}
	req.ToolChoice = &pb.ToolChoice{Function: named.Function.Name}
	return nil
}

// toolCallsToProto converts an assistant message's "tool_calls".
func toolCallsToProto(calls []toolCall) []*pb.ToolCall {
	var out []*pb.ToolCall
	for _, c := range calls {
		out = append(out, &pb.ToolCall{Id: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
	}
	return out
}

// toolCallsOf is a response message's "tool_calls".
func toolCallsOf(f *pb.Final) []toolCall {
	var out []toolCall
	for _, c := range f.GetToolCalls() {
		out = append(out, toolCall{ID: c.GetId(), Type: "function", Function: toolCallFields{Name: c.GetName(), Arguments: c.GetArguments()}})
	}
	return out
}

// toolCallDeltas are a chunk's "delta.tool_calls": the first delta of a call carries its id,
// type and name, the next ones argument fragments.
func toolCallDeltas(ds []*pb.ToolCallDelta) []toolCall {
	out := make([]toolCall, len(ds))
	for i, d := range ds {
		index := int(d.GetIndex())
		out[i] = toolCall{Index: &index, ID: d.GetId(), Function: toolCallFields{Name: d.GetName(), Arguments: d.GetArguments()}}
		if d.GetId() != "" || d.GetName() != "" {
			out[i].Type = "function"
		}
	}
	return out
}
