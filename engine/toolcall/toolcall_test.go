package toolcall

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fixture struct {
	name    string
	format  Format
	text    string
	content string
	calls   []Call // ID "" means generated
}

var fixtures = []fixture{
	// Hermes / Qwen.
	{
		name: "hermes single", format: Hermes,
		text:  "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
		calls: []Call{{Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`}},
	},
	{
		name: "hermes content then parallel", format: Hermes,
		text:    "I'll look up both cities.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"東京\"}}\n</tool_call>",
		content: "I'll look up both cities.",
		calls: []Call{
			{Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Name: "get_weather", Arguments: `{"city":"東京"}`},
		},
	},
	{
		name: "qwen3 think then nested", format: Hermes,
		text:    "<think>\nThe user wants an event created.\n</think>\n\n<tool_call>\n{\"name\": \"create_event\", \"arguments\": {\"title\": \"Réunion 🎉\", \"when\": {\"start\": \"2025-01-02T10:00\", \"end\": null}, \"attendees\": [\"a@b.c\", \"d\\\"e\"]}}\n</tool_call>",
		content: "<think>\nThe user wants an event created.\n</think>",
		calls:   []Call{{Name: "create_event", Arguments: `{"title":"Réunion 🎉","when":{"start":"2025-01-02T10:00","end":null},"attendees":["a@b.c","d\"e"]}`}},
	},
	{
		name: "hermes string arguments, no newlines", format: Hermes,
		text:  `<tool_call>{"arguments": "{\"q\": \"x\"}", "name": "search"}</tool_call>`,
		calls: []Call{{Name: "search", Arguments: `{"q":"x"}`}},
	},
	{
		name: "hermes unclosed at end", format: Hermes,
		text:  "<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n",
		calls: []Call{{Name: "ping", Arguments: `{}`}},
	},
	{
		name: "hermes no arguments", format: Hermes,
		text:  "<tool_call>\n{\"name\": \"now\"}\n</tool_call>",
		calls: []Call{{Name: "now", Arguments: `{}`}},
	},
	{
		name: "hermes malformed json is content", format: Hermes,
		text:    "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call> done",
		content: "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call> done",
	},
	{
		name: "hermes no calls", format: Hermes,
		text:    "The weather in Paris is <b>sunny</b>, 21 °C. Use <tool> tags? No.\n",
		content: "The weather in Paris is <b>sunny</b>, 21 °C. Use <tool> tags? No.\n",
	},
	{
		name: "hermes text after call", format: Hermes,
		text:    "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n\nWaiting for the result.",
		content: "Waiting for the result.",
		calls:   []Call{{Name: "a", Arguments: `{"x":1}`}},
	},
	{
		name: "hermes arguments not object", format: Hermes,
		text:    `<tool_call>{"name": "a", "arguments": [1]}</tool_call>`,
		content: `<tool_call>{"name": "a", "arguments": [1]}</tool_call>`,
	},
	// Llama 3.x.
	{
		name: "llama3 json parameters", format: Llama3,
		text:  `{"name": "get_current_conditions", "parameters": {"location": "San Francisco, CA", "unit": "Fahrenheit"}}`,
		calls: []Call{{Name: "get_current_conditions", Arguments: `{"location":"San Francisco, CA","unit":"Fahrenheit"}`}},
	},
	{
		name: "llama3 type function and whitespace", format: Llama3,
		text:  "\n  {\"type\": \"function\", \"name\": \"get_time\", \"parameters\": {\"tz\": \"Europe/Zürich\"}}\n",
		calls: []Call{{Name: "get_time", Arguments: `{"tz":"Europe/Zürich"}`}},
	},
	{
		name: "llama3 several separated", format: Llama3,
		text: "{\"name\": \"a\", \"parameters\": {\"n\": 1}}; {\"name\": \"b\", \"arguments\": {\"s\": \"x;y\"}}\n{\"name\": \"c\", \"parameters\": {}}",
		calls: []Call{
			{Name: "a", Arguments: `{"n":1}`},
			{Name: "b", Arguments: `{"s":"x;y"}`},
			{Name: "c", Arguments: `{}`},
		},
	},
	{
		name: "llama3 python_tag json", format: Llama3,
		text:  `<|python_tag|>{"name": "search", "parameters": {"query": "llama.cpp grammar"}}`,
		calls: []Call{{Name: "search", Arguments: `{"query":"llama.cpp grammar"}`}},
	},
	{
		name: "llama3 python_tag builtin", format: Llama3,
		text:  `<|python_tag|>brave_search.call(query="latest news on Mars", count=3, safe=True)`,
		calls: []Call{{Name: "brave_search", Arguments: `{"query":"latest news on Mars","count":3,"safe":true}`}},
	},
	{
		name: "llama3 python_tag code is content", format: Llama3,
		text:    "Let me compute.\n<|python_tag|>print(2 + 2)",
		content: "Let me compute.\n<|python_tag|>print(2 + 2)",
	},
	{
		name: "llama3 plain answer", format: Llama3,
		text:    "The capital of France is Paris. {not json}",
		content: "The capital of France is Paris. {not json}",
	},
	{
		name: "llama3 json answer is content", format: Llama3,
		text:    `{"answer": 42}`,
		content: `{"answer": 42}`,
	},
	{
		name: "llama3 call followed by prose is content", format: Llama3,
		text:    `{"name": "a", "parameters": {}} and then I will answer.`,
		content: `{"name": "a", "parameters": {}} and then I will answer.`,
	},
	{
		name: "llama3 truncated", format: Llama3,
		text:    `{"name": "a", "parameters": {"x": "unfinish`,
		content: `{"name": "a", "parameters": {"x": "unfinish`,
	},
	// Mistral.
	{
		name: "mistral v3 array with ids", format: Mistral,
		text: `[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Lyon"}, "id": "abc123def"}, {"name": "get_time", "arguments": {"tz": "CET"}, "id": "Zx9Yw8Vu7"}]`,
		calls: []Call{
			{ID: "abc123def", Name: "get_weather", Arguments: `{"city":"Lyon"}`},
			{ID: "Zx9Yw8Vu7", Name: "get_time", Arguments: `{"tz":"CET"}`},
		},
	},
	{
		name: "mistral v3 without id", format: Mistral,
		text:  "[TOOL_CALLS][{\"name\": \"lookup\", \"arguments\": {\"term\": \"naïve \\u00e9\"}}]",
		calls: []Call{{Name: "lookup", Arguments: `{"term":"naïve \u00e9"}`}},
	},
	{
		name: "mistral named form parallel", format: Mistral,
		text: `[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_weather[ARGS]{"city": "Berlin", "days": [1, 2]}`,
		calls: []Call{
			{Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Name: "get_weather", Arguments: `{"city":"Berlin","days":[1,2]}`},
		},
	},
	{
		name: "mistral call id form", format: Mistral,
		text:  `[TOOL_CALLS]search[CALL_ID]a1b2c3d4e[ARGS]{"q": "x"}`,
		calls: []Call{{ID: "a1b2c3d4e", Name: "search", Arguments: `{"q":"x"}`}},
	},
	{
		name: "mistral content before", format: Mistral,
		text:    "Checking the weather now. [TOOL_CALLS][{\"name\": \"w\", \"arguments\": {}}]",
		content: "Checking the weather now.",
		calls:   []Call{{Name: "w", Arguments: `{}`}},
	},
	{
		name: "mistral broken array", format: Mistral,
		text:    `[TOOL_CALLS] [{"name": "w", "arguments": {"a": 1}`,
		content: `[TOOL_CALLS] [{"name": "w", "arguments": {"a": 1}`,
	},
	{
		name: "mistral marker in prose", format: Mistral,
		text:    "Use the [TOOL_CALLS] token, or [TOOL_ not.",
		content: "Use the [TOOL_CALLS] token, or [TOOL_ not.",
	},
	// Generic.
	{
		name: "generic object", format: Generic,
		text:  `{"name": "add", "arguments": {"a": 1, "b": 2.5}}`,
		calls: []Call{{Name: "add", Arguments: `{"a":1,"b":2.5}`}},
	},
	{
		name: "generic array in fence", format: Generic,
		text: "```json\n[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"parameters\": {\"k\": [true, null]}}]\n```",
		calls: []Call{
			{Name: "a", Arguments: `{}`},
			{Name: "b", Arguments: `{"k":[true,null]}`},
		},
	},
	{
		name: "generic openai shape", format: Generic,
		text:  `[{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]`,
		calls: []Call{{ID: "call_1", Name: "f", Arguments: `{"x":1}`}},
	},
	{
		name: "generic prose", format: Generic,
		text:    "``inline`` code and {braces}",
		content: "``inline`` code and {braces}",
	},
	{
		name: "generic fenced non-call", format: Generic,
		text:    "```json\n{\"result\": 1}\n```",
		content: "```json\n{\"result\": 1}\n```",
	},
	{name: "empty", format: Hermes},
	{name: "only whitespace", format: Llama3, text: " \n", content: " \n"},
}

func checkResult(t *testing.T, f fixture, content string, calls []Call) {
	t.Helper()
	if content != f.content {
		t.Errorf("content = %q, want %q", content, f.content)
	}
	if len(calls) != len(f.calls) {
		t.Fatalf("calls = %+v, want %+v", calls, f.calls)
	}
	for i, c := range calls {
		w := f.calls[i]
		if c.Name != w.Name || c.Arguments != w.Arguments {
			t.Errorf("call %d = %+v, want %+v", i, c, w)
		}
		if !json.Valid([]byte(c.Arguments)) {
			t.Errorf("call %d arguments not JSON: %q", i, c.Arguments)
		}
		checkID(t, f.format, w.ID, c.ID)
	}
}

func checkID(t *testing.T, f Format, want, got string) {
	t.Helper()
	switch {
	case want != "":
		if got != want {
			t.Errorf("id = %q, want %q", got, want)
		}
	case f == Mistral:
		if len(got) != 9 {
			t.Errorf("generated Mistral id %q, want 9 characters", got)
		}
	case !strings.HasPrefix(got, "call_") || len(got) != 29:
		t.Errorf("generated id %q, want call_ and 24 characters", got)
	}
}

func TestParse(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			content, calls, err := Parse(f.format, f.text)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, f, content, calls)
		})
	}
}

// TestStreamChunkings checks that every chunking of a reply, one byte at a
// time included, streams the same content and calls as Parse returns.
func TestStreamChunkings(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			for trial := range 30 {
				maxChunk := 1 + trial%8
				if trial == 0 {
					maxChunk = 1
				}
				events := streamChunks(f.format, f.text, func() int { return 1 + rng.IntN(maxChunk) })
				checkEvents(t, events)
				content, calls := Collect(events)
				checkResult(t, f, content, calls)
			}
		})
	}
}

func streamChunks(f Format, text string, size func() int) []Event {
	s := NewStream(f)
	var events []Event
	for text != "" {
		n := min(size(), len(text))
		events = append(events, s.Write(text[:n])...)
		text = text[n:]
	}
	return append(events, s.Close()...)
}

// checkEvents checks the OpenAI delta order: a call's header (id and name)
// comes before its arguments, and indexes count up from 0.
func checkEvents(t *testing.T, events []Event) {
	t.Helper()
	next := 0
	for _, e := range events {
		d := e.ToolCall
		switch {
		case d == nil:
			if e.Content == "" {
				t.Errorf("empty content event")
			}
		case d.Name != "":
			if d.Index != next || d.ID == "" {
				t.Errorf("header %+v, want index %d and an id", d, next)
			}
			next++
		case d.Index != next-1:
			t.Errorf("arguments for index %d before its header", d.Index)
		}
	}
}

// TestStreamReleasesContentEarly checks that content is held only while it
// may still start a call.
func TestStreamReleasesContentEarly(t *testing.T) {
	tests := []struct {
		format Format
		delta  string
		want   string
	}{
		{Hermes, "Hello <tool_c", "Hello"},
		{Hermes, "Hello <b>", "Hello <b>"},
		{Hermes, "a < b", "a < b"},
		{Mistral, "Result: [TOOL_", "Result:"},
		{Mistral, "Result: [1, 2]", "Result: [1, 2]"},
		{Llama3, "Paris is", "Paris is"},
		{Llama3, "  {\"name\"", ""},
		{Generic, "``", ""},
	}
	for _, tt := range tests {
		content, _ := Collect(NewStream(tt.format).Write(tt.delta))
		if content != tt.want {
			t.Errorf("%v Write(%q) released %q, want %q", tt.format, tt.delta, content, tt.want)
		}
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		file string
		want Format
	}{
		{"qwen2.5-7b-instruct.jinja", Hermes},
		{"qwen3-0.6b.jinja", Hermes},
		{"llama-3.3-70b-instruct.jinja", Llama3},
		{"mistral-7b-instruct-v0.3.jinja", Mistral},
		{"gemma-2-2b-it.jinja", Generic},
		{"phi-3.5-mini-instruct.jinja", Generic},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(filepath.Join("..", "chattemplate", "testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := Detect(string(b)); got != tt.want {
			t.Errorf("Detect(%s) = %v, want %v", tt.file, got, tt.want)
		}
	}
	if got := Detect("{{ messages }}", "[TOOL_CALLS]"); got != Mistral {
		t.Errorf("Detect with vocab marker = %v, want mistral", got)
	}
}

func FuzzStream(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(uint8(fx.format), fx.text, uint8(3))
	}
	f.Fuzz(func(t *testing.T, format uint8, text string, chunk uint8) {
		fm := Format(format % 4)
		content, calls, _ := Parse(fm, text)
		size := 1 + int(chunk%16)
		events := streamChunks(fm, text, func() int { return size })
		checkEvents(t, events)
		sc, scalls := Collect(events)
		if sc != content || len(scalls) != len(calls) {
			t.Fatalf("stream (%q, %d calls) differs from Parse (%q, %d calls)", sc, len(scalls), content, len(calls))
		}
		for i, c := range calls {
			if !json.Valid([]byte(c.Arguments)) || c.Arguments[0] != '{' {
				t.Fatalf("call %d arguments %q not an object", i, c.Arguments)
			}
			if scalls[i].Name != c.Name || scalls[i].Arguments != c.Arguments {
				t.Fatalf("stream call %d = %+v, Parse %+v", i, scalls[i], c)
			}
		}
	})
}
