package llamacpp

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
)

// weatherTool's schema keeps its generated arguments short: a random model's strings are noise.
var weatherTool = engine.Tool{
	Name: "get_weather", Description: "Current weather in °C",
	Parameters: `{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`,
}

var unitsTool = engine.Tool{
	Name:       "set_units",
	Parameters: `{"type": "object", "properties": {"metric": {"type": "boolean"}, "scale": {"enum": ["c", "f", "k"]}}, "required": ["metric", "scale"], "additionalProperties": false}`,
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../chattemplate/testdata/" + name + ".jinja")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenderPromptWithTools(t *testing.T) {
	question := []engine.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "What is the weather in Zürich?"}}
	tests := []struct {
		fixture string
		choice  engine.ToolChoice
		want    []string // parts of the template's reference rendering (chattemplate's TestRenderTools)
	}{
		{"qwen2.5-7b-instruct", engine.ToolChoice{}, []string{"<|im_start|>system\nBe brief.\n\n# Tools\n\n",
			"<tools>\n" + `{"type": "function", "function": {"name": "get_weather", "description": "Current weather in °C", ` +
				`"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}` + "\n</tools>"}},
		{"llama-3.3-70b-instruct", engine.ToolChoice{Mode: engine.ToolRequired}, []string{"Environment: ipython\n",
			"{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"Current weather in °C\",\n"}},
		{"mistral-7b-instruct-v0.3", engine.ToolChoice{Function: "get_weather"}, []string{"[AVAILABLE_TOOLS] [" +
			`{"type": "function", "function": {"name": "get_weather", "description": "Current weather in °C", ` +
			`"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}` + "][/AVAILABLE_TOOLS]"}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			m := loadWithTemplate(t, fixture(t, tt.fixture))
			req := engine.GenerateRequest{Messages: question, Tools: []engine.Tool{weatherTool}, ToolChoice: tt.choice}
			got, err := m.renderPrompt(req)
			if err != nil {
				t.Fatal(err)
			}
			for _, part := range tt.want {
				if !strings.Contains(got, part) {
					t.Errorf("prompt lacks %q\nprompt: %q", part, got)
				}
			}
			req.ToolChoice.Mode = engine.ToolNone
			if got, err = m.renderPrompt(req); err != nil || strings.Contains(got, "get_weather") {
				t.Errorf("tool_choice none: prompt %q, err %v", got, err)
			}
		})
	}
}

func TestToolChoiceForcesCall(t *testing.T) {
	if testing.Short() {
		t.Skip("generates with three templates")
	}
	tests := []struct {
		fixture string
		choice  engine.ToolChoice
	}{
		{"qwen2.5-7b-instruct", engine.ToolChoice{Mode: engine.ToolRequired}},
		{"llama-3.3-70b-instruct", engine.ToolChoice{Function: "set_units"}},
		{"mistral-7b-instruct-v0.3", engine.ToolChoice{Function: "set_units"}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			m := loadWithTemplateContext(t, fixture(t, tt.fixture), 2048)
			var deltas []engine.ToolCallDelta
			var content strings.Builder
			req := engine.GenerateRequest{
				Messages:   []engine.Message{{Role: "user", Content: "Use metric units."}},
				Tools:      []engine.Tool{unitsTool},
				ToolChoice: tt.choice,
				Sampling:   engine.Sampling{Temperature: 1, Seed: 7},
				MaxTokens:  200,
				OnToolCall: func(d engine.ToolCallDelta) error { deltas = append(deltas, d); return nil },
			}
			res, err := m.Generate(t.Context(), req, func(s string) error { content.WriteString(s); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if res.FinishReason != engine.FinishToolCalls || len(res.ToolCalls) == 0 {
				t.Fatalf("finish %v, calls %+v, content %q", res.FinishReason, res.ToolCalls, content.String())
			}
			if len(deltas) == 0 {
				t.Error("OnToolCall got no deltas")
			}
			for _, c := range res.ToolCalls {
				var args struct {
					Metric *bool   `json:"metric"`
					Scale  *string `json:"scale"`
				}
				if err := json.Unmarshal([]byte(c.Arguments), &args); err != nil || c.Name != "set_units" || c.ID == "" {
					t.Fatalf("call %+v: %v", c, err)
				}
				if args.Metric == nil || args.Scale == nil || !strings.Contains("cfk", *args.Scale) {
					t.Errorf("arguments %s do not match the schema", c.Arguments)
				}
			}
		})
	}
}

func TestToolResultRoundTrip(t *testing.T) {
	m := loadWithTemplateContext(t, fixture(t, "qwen2.5-7b-instruct"), 1024)
	req := engine.GenerateRequest{
		Messages: []engine.Message{
			{Role: "user", Content: "Weather in Zürich?"},
			{Role: "assistant", ToolCalls: []engine.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Zürich"}`}}},
			{Role: "tool", ToolCallID: "call_1", Content: `{"temp":21}`},
		},
		Tools:     []engine.Tool{weatherTool},
		MaxTokens: 4,
	}
	prompt, err := m.renderPrompt(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>", "<tool_response>\n{\"temp\":21}\n</tool_response>"} {
		if !strings.Contains(prompt, part) {
			t.Errorf("prompt lacks %q\nprompt: %q", part, prompt)
		}
	}
	res, err := m.Generate(t.Context(), req, func(string) error { return nil })
	if err != nil || res.CompletionTokens == 0 {
		t.Fatalf("res %+v, err %v", res, err)
	}
}
