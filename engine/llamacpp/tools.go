package llamacpp

import (
	"encoding/json"
	"fmt"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/chattemplate"
	"github.com/ekisa-team/syn4pse/engine/toolcall"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// templateMessage is a message as the chat template reads it.
func templateMessage(msg engine.Message) chattemplate.Message {
	out := chattemplate.Message{Role: msg.Role, Content: msg.Content, ToolCallID: msg.ToolCallID, Name: msg.Name}
	for _, c := range msg.ToolCalls {
		out.ToolCalls = append(out.ToolCalls, chattemplate.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments})
	}
	return out
}

// templateTools are the tools in OpenAI's shape, [{"type": "function", "function": {name,
// description, parameters}}], as JSON that keeps the schemas' key order in the prompt.
func templateTools(tools []engine.Tool) ([]json.RawMessage, error) {
	type function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	}
	out := make([]json.RawMessage, len(tools))
	for i, t := range tools {
		if t.Parameters != "" && !json.Valid([]byte(t.Parameters)) {
			return nil, fmt.Errorf("%w: tools[%d] (%s): parameters is not valid JSON", engine.ErrInvalidRequest, i, t.Name)
		}
		b, err := json.Marshal(struct {
			Type     string   `json:"type"`
			Function function `json:"function"`
		}{"function", function{t.Name, t.Description, json.RawMessage(t.Parameters)}})
		if err != nil {
			return nil, fmt.Errorf("%w: tools[%d] (%s): %v", engine.ErrInvalidRequest, i, t.Name, err)
		}
		out[i] = b
	}
	return out, nil
}

// toolGrammar forces tool calls in format f whose arguments match each tool's schema.
func toolGrammar(req engine.GenerateRequest, f toolcall.Format) (string, error) {
	tools := make([]toolcall.Tool, len(req.Tools))
	for i, t := range req.Tools {
		tools[i].Name = t.Name
		if t.Parameters == "" {
			continue
		}
		g, err := native.SchemaToGrammar([]byte(t.Parameters))
		if err != nil {
			return "", fmt.Errorf("%w: tools[%d] (%s) parameters: %v", engine.ErrInvalidRequest, i, t.Name, err)
		}
		tools[i].Arguments = g
	}
	g, err := toolcall.Grammar(tools, toolcall.Choice{Function: req.ToolChoice.Function}, f)
	if err != nil {
		return "", fmt.Errorf("%w: %v", engine.ErrInvalidRequest, err)
	}
	return g, nil
}

// callReader reads tool calls out of generated text: content goes on to emit, calls to onCall
// (when set) and into the result.
type callReader struct {
	stream *toolcall.Stream
	emit   func(string) error
	onCall func(engine.ToolCallDelta) error
	events []toolcall.Event
}

func (c *callReader) write(text string) error {
	return c.send(c.stream.Write(text))
}

func (c *callReader) send(events []toolcall.Event) error {
	for _, e := range events {
		c.events = append(c.events, e)
		var err error
		switch {
		case e.ToolCall == nil:
			if e.Content != "" {
				err = c.emit(e.Content)
			}
		case c.onCall != nil:
			d := e.ToolCall
			err = c.onCall(engine.ToolCallDelta{Index: d.Index, ID: d.ID, Name: d.Name, Arguments: d.Arguments})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// close flushes what the stream held and puts the calls into res.
func (c *callReader) close(res *engine.GenerateResult) error {
	if err := c.send(c.stream.Close()); err != nil {
		return err
	}
	_, calls := toolcall.Collect(c.events)
	for _, call := range calls {
		res.ToolCalls = append(res.ToolCalls, engine.ToolCall{ID: call.ID, Name: call.Name, Arguments: call.Arguments})
	}
	if len(calls) > 0 && res.FinishReason == engine.FinishStop {
		res.FinishReason = engine.FinishToolCalls
	}
	return nil
}
