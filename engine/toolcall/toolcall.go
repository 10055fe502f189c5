// Package toolcall turns a model's generated text into OpenAI-style tool calls.
//
// Models announce tool calls in the format their chat template taught them:
// Hermes and Qwen wrap JSON in <tool_call> tags, Llama 3.x replies with a bare
// JSON object (or <|python_tag|> and a built-in call), Mistral prefixes
// [TOOL_CALLS]. Detect picks the format from the chat template, Parse reads a
// whole reply and Stream reads one as it is generated.
//
// Invariants:
//   - Parse is Stream fed the whole text at once, so streamed output, joined,
//     equals Parse's result for every chunking of the same text.
//   - A call's Arguments is always compact JSON text of an object.
//   - Text that looks like a call but does not parse as one (bad JSON, no
//     name, arguments that are not an object) is content, never an error:
//     the client sees what the model wrote instead of losing the reply.
//
// The package is pure Go; it neither renders templates nor calls llama.cpp.
package toolcall

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
)

// Format is the way a model writes tool calls.
type Format int

const (
	// Generic reads a reply that is a JSON call object or array of them,
	// optionally inside a ``` fence.
	Generic Format = iota
	// Hermes reads <tool_call>{"name": ..., "arguments": ...}</tool_call>
	// blocks (Hermes, Qwen 2.5, Qwen 3).
	Hermes
	// Llama3 reads a reply that is JSON {"name": ..., "parameters": ...}
	// objects separated by ';' or newlines, and <|python_tag|> calls.
	Llama3
	// Mistral reads [TOOL_CALLS][{...}] and [TOOL_CALLS]name[ARGS]{...}.
	Mistral
)

// String returns the format's name.
func (f Format) String() string {
	switch f {
	case Hermes:
		return "hermes"
	case Llama3:
		return "llama3"
	case Mistral:
		return "mistral"
	default:
		return "generic"
	}
}

// Call is one complete tool call.
type Call struct {
	ID        string
	Name      string
	Arguments string // compact JSON text of an object
}

// Detect chooses the format from a model's Jinja chat template text. Markers
// are extra strings to look at as well, such as special tokens of the vocab.
func Detect(chatTemplate string, markers ...string) Format {
	text := chatTemplate + "\x00" + strings.Join(markers, "\x00")
	switch {
	case strings.Contains(text, "[TOOL_CALLS]"):
		return Mistral
	case strings.Contains(text, "<tool_call>"):
		return Hermes
	case strings.Contains(text, "<|python_tag|>"), strings.Contains(text, "ipython"):
		return Llama3
	default:
		return Generic
	}
}

// Parse reads a whole reply and returns its content (the text that is not a
// call, with whitespace next to calls removed) and its calls. IDs come from
// the text where the format carries them (Mistral) and are generated
// otherwise. The error is reserved for future strict modes and is always nil.
func Parse(f Format, text string) (content string, calls []Call, err error) {
	s := NewStream(f)
	events := append(s.Write(text), s.Close()...)
	content, calls = Collect(events)
	return content, calls, nil
}

// Collect joins stream events into content and calls.
func Collect(events []Event) (content string, calls []Call) {
	var b strings.Builder
	for _, e := range events {
		if e.ToolCall == nil {
			b.WriteString(e.Content)
			continue
		}
		d := e.ToolCall
		for len(calls) <= d.Index {
			calls = append(calls, Call{})
		}
		c := &calls[d.Index]
		if d.ID != "" {
			c.ID = d.ID
		}
		if d.Name != "" {
			c.Name = d.Name
		}
		c.Arguments += d.Arguments
	}
	return b.String(), calls
}

// parsedCall is a call read from JSON, before it gets an index.
type parsedCall struct {
	id, name, args string
}

// callFromJSON reads one call object: {"name", "arguments"|"parameters", "id"},
// or OpenAI's {"id", "type", "function": {...}}.
func callFromJSON(raw []byte) (parsedCall, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return parsedCall{}, false
	}
	var c parsedCall
	if v, ok := obj["id"]; ok {
		if json.Unmarshal(v, &c.id) != nil {
			return parsedCall{}, false
		}
	}
	if fn, ok := obj["function"]; ok && obj["name"] == nil {
		inner, ok := callFromJSON(fn)
		inner.id = c.id
		return inner, ok
	}
	if json.Unmarshal(obj["name"], &c.name) != nil || c.name == "" {
		return parsedCall{}, false
	}
	args, ok := obj["arguments"]
	if !ok {
		args = obj["parameters"]
	}
	c.args, ok = argumentsJSON(args)
	return c, ok
}

// argumentsJSON normalizes arguments to compact object JSON. Absent or null
// arguments are {}; a string holding an object's JSON is unwrapped (some
// models double-encode).
func argumentsJSON(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "{}", true
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		raw = bytes.TrimSpace([]byte(s))
	}
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return "", false
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return "", false
	}
	return b.String(), true
}

// callsFromJSON reads a call object or an array of call objects.
func callsFromJSON(raw []byte) ([]parsedCall, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil || len(items) == 0 {
			return nil, false
		}
		calls := make([]parsedCall, 0, len(items))
		for _, it := range items {
			c, ok := callFromJSON(it)
			if !ok {
				return nil, false
			}
			calls = append(calls, c)
		}
		return calls, true
	}
	c, ok := callFromJSON(raw)
	if !ok {
		return nil, false
	}
	return []parsedCall{c}, true
}

// jsonEnd returns the length of the JSON object or array that s starts with,
// or -1 if s ends before it closes. It only balances brackets outside
// strings; validity is checked by the caller.
func jsonEnd(s string) int {
	depth, inString, escaped := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth <= 0 {
				return i + 1
			}
		}
	}
	return -1
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randomID returns n random letters and digits.
func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// newID returns an ID in the shape the format's templates accept: Mistral's
// templates require 9 letters and digits, others get OpenAI's "call_" form.
func newID(f Format) string {
	if f == Mistral {
		return randomID(9)
	}
	return "call_" + randomID(24)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func trimSpaceLeft(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}

func trimSpaceRight(s string) string {
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}
