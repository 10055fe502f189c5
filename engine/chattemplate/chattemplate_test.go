package chattemplate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The conversations every fixture renders.
var (
	systemAndUser = []Message{
		{Role: "system", Content: "You are a helpful assistant."},
		{Role: "user", Content: "What is the capital of France?"},
	}
	multiTurn = []Message{
		{Role: "user", Content: "Hello!"},
		{Role: "assistant", Content: "Hi! How can I help?"},
		{Role: "user", Content: "Tell me a joke."},
	}
)

// dateToken stands in an expected prompt for the date strftime_now gives.
const dateToken = "{TODAY}"

// phi4ReasoningSystem is the system turn phi-4-reasoning-plus always opens with.
const phi4ReasoningSystem = "<|im_start|>system<|im_sep|>You are Phi, a language model trained by Microsoft to help users. " +
	"Your role as an assistant involves thoroughly exploring questions through a systematic thinking process before providing the final precise and accurate solutions. " +
	"This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, backtracing, and iteration to develop well-considered thinking process. " +
	"Please structure your response into two main sections: Thought and Solution using the specified format: <think> {Thought section} </think> {Solution section}. " +
	"In the Thought section, detail your reasoning process in steps. " +
	"Each step should include detailed considerations such as analysing questions, summarizing relevant findings, brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and revisiting previous steps. " +
	"In the Solution section, based on various attempts, explorations, and reflections from the Thought section, systematically present the final solution that you deem correct. " +
	"The Solution section should be logical, accurate, and concise and detail necessary steps needed to reach the conclusion. " +
	"Now, try to solve the following question through the above guidelines:<|im_end|>"

// familyCase is one real template rendered for one conversation, with the
// prompt its model family documents, written out by hand.
type familyCase struct {
	name     string
	fixture  string
	messages []Message
	opts     Options
	want     string
}

func familyCases() []familyCase {
	llama := Options{BOSToken: "<|begin_of_text|>", EOSToken: "<|eot_id|>"}
	qwen := Options{EOSToken: "<|im_end|>"}
	mistral := Options{BOSToken: "<s>", EOSToken: "</s>"}
	gemma := Options{BOSToken: "<bos>", EOSToken: "<eos>"}
	phi3 := Options{BOSToken: "<s>", EOSToken: "<|endoftext|>"}
	deepseek := Options{BOSToken: "<｜begin▁of▁sentence｜>", EOSToken: "<｜end▁of▁sentence｜>"}
	granite := Options{EOSToken: "<|end_of_text|>"}
	phi4 := Options{EOSToken: "<|im_end|>"}
	withPrompt := func(o Options) Options { o.AddGenerationPrompt = true; return o }

	return []familyCase{
		{"llama3/system+user", "llama-3.3-70b-instruct", systemAndUser, withPrompt(llama),
			"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
				"Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" +
				"You are a helpful assistant.<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3/multi-turn", "llama-3.3-70b-instruct", multiTurn, llama,
			"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
				"Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>"},

		{"qwen2.5/system+user", "qwen2.5-7b-instruct", systemAndUser, withPrompt(qwen),
			"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
				"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
				"<|im_start|>assistant\n"},
		{"qwen2.5/multi-turn", "qwen2.5-7b-instruct", multiTurn, qwen,
			"<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
				"<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\nHi! How can I help?<|im_end|>\n" +
				"<|im_start|>user\nTell me a joke.<|im_end|>\n"},

		{"qwen3/system+user", "qwen3-0.6b", systemAndUser, withPrompt(qwen),
			"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
				"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
				"<|im_start|>assistant\n"},
		{"qwen3/multi-turn", "qwen3-0.6b", multiTurn, qwen,
			"<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\nHi! How can I help?<|im_end|>\n" +
				"<|im_start|>user\nTell me a joke.<|im_end|>\n"},
		{"qwen3/thinking off, past reasoning dropped", "qwen3-0.6b",
			[]Message{
				{Role: "user", Content: "What is 2+2?"},
				{Role: "assistant", Content: "<think>\nTwo plus two.\n</think>\n\n4"},
				{Role: "user", Content: "And 3+3?"},
			},
			Options{AddGenerationPrompt: true, EOSToken: "<|im_end|>", Vars: map[string]any{"enable_thinking": false}},
			"<|im_start|>user\nWhat is 2+2?<|im_end|>\n" +
				"<|im_start|>assistant\n4<|im_end|>\n" +
				"<|im_start|>user\nAnd 3+3?<|im_end|>\n" +
				"<|im_start|>assistant\n<think>\n\n</think>\n\n"},

		// Mistral v0.3 puts the system message into the last user turn.
		{"mistral-v0.3/system+user", "mistral-7b-instruct-v0.3", systemAndUser, withPrompt(mistral),
			"<s>[INST] You are a helpful assistant.\n\nWhat is the capital of France?[/INST]"},
		{"mistral-v0.3/multi-turn", "mistral-7b-instruct-v0.3", multiTurn, mistral,
			"<s>[INST] Hello![/INST] Hi! How can I help?</s>[INST] Tell me a joke.[/INST]"},

		{"mistral-v7/system+user", "mistral-small-3.1-24b-instruct-2503", systemAndUser, withPrompt(mistral),
			"<s>[SYSTEM_PROMPT]You are a helpful assistant.[/SYSTEM_PROMPT][INST]What is the capital of France?[/INST]"},

		// Gemma 2 has no system role (see TestRaiseException).
		{"gemma2/multi-turn", "gemma-2-2b-it", multiTurn, withPrompt(gemma),
			"<bos><start_of_turn>user\nHello!<end_of_turn>\n" +
				"<start_of_turn>model\nHi! How can I help?<end_of_turn>\n" +
				"<start_of_turn>user\nTell me a joke.<end_of_turn>\n" +
				"<start_of_turn>model\n"},

		{"phi3.5/system+user", "phi-3.5-mini-instruct", systemAndUser, withPrompt(phi3),
			"<|system|>\nYou are a helpful assistant.<|end|>\n" +
				"<|user|>\nWhat is the capital of France?<|end|>\n" +
				"<|assistant|>\n"},
		{"phi3.5/multi-turn", "phi-3.5-mini-instruct", multiTurn, phi3,
			"<|user|>\nHello!<|end|>\n" +
				"<|assistant|>\nHi! How can I help?<|end|>\n" +
				"<|user|>\nTell me a joke.<|end|>\n" +
				"<|endoftext|>"},

		// phi-4-reasoning wraps assistant turns in {% generation %}.
		{"phi4-reasoning/system+user", "phi-4-reasoning-plus", systemAndUser, withPrompt(phi4),
			phi4ReasoningSystem +
				"<|im_start|>user<|im_sep|>What is the capital of France?<|im_end|>" +
				"<|im_start|>assistant<|im_sep|>"},
		{"phi4-reasoning/multi-turn", "phi-4-reasoning-plus", multiTurn, phi4,
			phi4ReasoningSystem +
				"<|im_start|>user<|im_sep|>Hello!<|im_end|>" +
				"<|im_start|>assistant<|im_sep|>Hi! How can I help?<|im_end|>" +
				"<|im_start|>user<|im_sep|>Tell me a joke.<|im_end|>"},

		{"deepseek-r1/system+user", "deepseek-r1-distill-qwen-32b", systemAndUser, withPrompt(deepseek),
			"<｜begin▁of▁sentence｜>You are a helpful assistant." +
				"<｜User｜>What is the capital of France?<｜Assistant｜><think>\n"},
		{"deepseek-r1/multi-turn", "deepseek-r1-distill-qwen-32b", multiTurn, deepseek,
			"<｜begin▁of▁sentence｜><｜User｜>Hello!" +
				"<｜Assistant｜>Hi! How can I help?<｜end▁of▁sentence｜>" +
				"<｜User｜>Tell me a joke."},
		{"deepseek-r1/reasoning dropped from history", "deepseek-r1-distill-qwen-32b",
			[]Message{
				{Role: "user", Content: "What is 2+2?"},
				{Role: "assistant", Content: "<think>Two plus two.</think>4"},
				{Role: "user", Content: "And 3+3?"},
			},
			withPrompt(deepseek),
			"<｜begin▁of▁sentence｜><｜User｜>What is 2+2?" +
				"<｜Assistant｜>4<｜end▁of▁sentence｜>" +
				"<｜User｜>And 3+3?<｜Assistant｜><think>\n"},

		{"granite3.3/system+user", "granite-3.3-2b-instruct", systemAndUser, withPrompt(granite),
			"<|start_of_role|>system<|end_of_role|>You are a helpful assistant.<|end_of_text|>\n" +
				"<|start_of_role|>user<|end_of_role|>What is the capital of France?<|end_of_text|>\n" +
				"<|start_of_role|>assistant<|end_of_role|>"},
		// Without a system message Granite dates its own with strftime_now.
		{"granite3.3/multi-turn", "granite-3.3-2b-instruct", multiTurn, granite,
			"<|start_of_role|>system<|end_of_role|>Knowledge Cutoff Date: April 2024. Today's Date: " + dateToken +
				". You are Granite, developed by IBM. You are a helpful AI assistant.<|end_of_text|>\n" +
				"<|start_of_role|>user<|end_of_role|>Hello!<|end_of_text|>\n" +
				"<|start_of_role|>assistant<|end_of_role|>Hi! How can I help?<|end_of_text|>\n" +
				"<|start_of_role|>user<|end_of_role|>Tell me a joke.<|end_of_text|>\n"},
	}
}

// loadTemplate parses testdata/<fixture>.jinja.
func loadTemplate(t testing.TB, fixture string) *Template {
	t.Helper()
	source, err := os.ReadFile(filepath.Join("testdata", fixture+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := Parse(string(source))
	if err != nil {
		t.Fatalf("Parse(%s): %v", fixture, err)
	}
	return tmpl
}

// expand puts the dates strftime_now may have given into want: the one
// before rendering and, should midnight have passed, the one after.
func expand(want string, before, after time.Time) []string {
	if !strings.Contains(want, dateToken) {
		return []string{want}
	}
	return []string{
		strings.ReplaceAll(want, dateToken, before.Format("January 02, 2006")),
		strings.ReplaceAll(want, dateToken, after.Format("January 02, 2006")),
	}
}

func TestRenderFamilies(t *testing.T) {
	for _, tc := range familyCases() {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := loadTemplate(t, tc.fixture)
			before := time.Now()
			got, err := tmpl.Render(tc.messages, tc.opts)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			wants := expand(tc.want, before, time.Now())
			for _, want := range wants {
				if got == want {
					return
				}
			}
			t.Errorf("prompt differs\n got: %q\nwant: %q", got, wants[0])
		})
	}
}

// weatherTool is an OpenAI-style tool schema as a request carries it: JSON
// whose key order the prompt must keep.
var weatherTool = json.RawMessage(`{"type": "function", "function": {"name": "get_weather",
	"description": "Current weather in °C",
	"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}`)

func TestRenderTools(t *testing.T) {
	question := []Message{
		{Role: "system", Content: "Be brief."},
		{Role: "user", Content: "What is the weather in Zürich?"},
	}
	tools := []json.RawMessage{weatherTool}
	tests := []struct {
		name, fixture string
		vars          map[string]any
		want          string
	}{
		{"qwen2.5 compact tojson", "qwen2.5-7b-instruct", map[string]any{"tools": tools},
			"<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
				"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
				`{"type": "function", "function": {"name": "get_weather", "description": "Current weather in °C", ` +
				`"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}` +
				"\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
				"<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" +
				"<|im_start|>user\nWhat is the weather in Zürich?<|im_end|>\n" +
				"<|im_start|>assistant\n"},
		{"llama3 tojson indent=4", "llama-3.3-70b-instruct", map[string]any{"tools": tools, "date_string": "01 Jan 2025"},
			"<|start_header_id|>system<|end_header_id|>\n\n" +
				"Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n" +
				"Be brief.<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\n" +
				"Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" +
				`Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.` +
				"Do not use variables.\n\n" +
				"{\n" +
				"    \"type\": \"function\",\n" +
				"    \"function\": {\n" +
				"        \"name\": \"get_weather\",\n" +
				"        \"description\": \"Current weather in °C\",\n" +
				"        \"parameters\": {\n" +
				"            \"type\": \"object\",\n" +
				"            \"properties\": {\n" +
				"                \"city\": {\n" +
				"                    \"type\": \"string\"\n" +
				"                }\n" +
				"            },\n" +
				"            \"required\": [\n" +
				"                \"city\"\n" +
				"            ]\n" +
				"        }\n" +
				"    }\n" +
				"}\n\n" +
				"What is the weather in Zürich?<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"mistral v0.3 tool.items() in order", "mistral-7b-instruct-v0.3", map[string]any{"tools": tools},
			"[AVAILABLE_TOOLS] [" +
				`{"type": "function", "function": {"name": "get_weather", "description": "Current weather in °C", ` +
				`"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}` +
				"][/AVAILABLE_TOOLS][INST] Be brief.\n\nWhat is the weather in Zürich?[/INST]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadTemplate(t, tc.fixture).Render(question, Options{AddGenerationPrompt: true, Vars: tc.vars})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("prompt differs\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}

func TestRaiseException(t *testing.T) {
	tests := []struct {
		name, fixture string
		messages      []Message
		vars          map[string]any
		message       string
	}{
		{"gemma2 has no system role", "gemma-2-2b-it", systemAndUser, nil,
			"System role not supported"},
		{"gemma2 wants alternating roles", "gemma-2-2b-it",
			[]Message{{Role: "user", Content: "a"}, {Role: "user", Content: "b"}}, nil,
			"Conversation roles must alternate user/assistant/user/assistant/..."},
		{"mistral wants alternating roles", "mistral-7b-instruct-v0.3",
			[]Message{{Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}, {Role: "assistant", Content: "c"}}, nil,
			"After the optional system message, conversation roles must alternate user/assistant/user/assistant/..."},
		{"mistral rejects unknown roles", "mistral-7b-instruct-v0.3",
			[]Message{{Role: "user", Content: "a"}, {Role: "narrator", Content: "b"}}, nil,
			"Only user and assistant roles are supported, with the exception of an initial optional system message!"},
		{"llama3 needs a user turn for tools", "llama-3.3-70b-instruct",
			[]Message{{Role: "system", Content: "s"}}, map[string]any{"tools": []json.RawMessage{weatherTool}},
			"Cannot put tools in the first user message when there's no first user message!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := loadTemplate(t, tc.fixture).Render(tc.messages, Options{AddGenerationPrompt: true, Vars: tc.vars})
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("Render = %q, %v; want an error wrapping ErrRejected", out, err)
			}
			if want := ErrRejected.Error() + ": " + tc.message; err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, source, mention string
	}{
		{"unclosed if", "{% if messages %}{{ messages[0].content }}", `"if"`},
		{"end tag of another block", "{% for m in messages %}{{ m.content }}{% endif %}", "endif"},
		{"unclosed expression", "{{ messages[0]['role'] ", "}}"},
		{"unknown tag", "{% frobnicate %}", "frobnicate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.source)
			if err == nil {
				t.Fatalf("Parse succeeded: %v", tmpl)
			}
			if !strings.HasPrefix(err.Error(), "parse chat template: ") || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q should start with %q and mention %s", err, "parse chat template: ", tc.mention)
			}
		})
	}
}

// TestGonjaLimits pins what gonja v2.9.1 cannot do, so that a gonja upgrade
// that fixes it shows up here; callers fall back to llama.cpp's formats.
func TestGonjaLimits(t *testing.T) {
	// Gemma 3 writes (a if c else b) inside parentheses, which gonja's
	// parser does not accept.
	source, err := os.ReadFile("testdata/gemma-3-it.jinja")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(string(source)); err == nil || !strings.Contains(err.Error(), "Unbalanced parenthesis") {
		t.Errorf("Parse(gemma-3) error = %v, want gonja's unbalanced parenthesis error", err)
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name, source string
		vars         map[string]any
		want         string
	}{
		{"unknown function", "{{ nope() }}", nil, "render chat template: line 1: nope is not callable"},
		{"unknown method", "\n{{ messages[0].content.nosuch() }}", nil, "render chat template: line 2: unknown method 'nosuch' for 'hi'"},
		{"reserved variable", "", map[string]any{"messages": "x"}, `render chat template: variable "messages" is set by Render, not Vars`},
		{"unsupported value", "", map[string]any{"tools": make(chan int)}, `render chat template: variable "tools": unsupported type chan int`},
		{"bad JSON", "", map[string]any{"tools": json.RawMessage(`[{"a": }]`)}, `render chat template: variable "tools": decode JSON: invalid character '}' looking for beginning of value`},
		{"not JSON serializable", "{{ strftime_now | tojson }}", nil, "render chat template: line 1: object of type func(string) string is not JSON serializable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.source)
			if err != nil {
				t.Fatal(err)
			}
			out, err := tmpl.Render([]Message{{Role: "user", Content: "hi"}}, Options{Vars: tc.vars})
			if err == nil || err.Error() != tc.want {
				t.Errorf("Render = %q, %v; want error %q", out, err, tc.want)
			}
		})
	}
}

// TestPythonSemantics covers what chat templates rely on and gonja does
// differently out of the box.
func TestPythonSemantics(t *testing.T) {
	one := []Message{{Role: "user", Content: "only"}}
	tests := []struct {
		name, source string
		vars         map[string]any
		want         string
	}{
		{"negative index on one message", "{{ messages[-1].content }}", nil, "only"},
		{"negative index after split", "{{ 'no-think'.split('</think>')[-1] }}|{{ 'a</think>b'.split('</think>')[-1] }}", nil, "no-think|b"},
		{"negative index after list filter", "{{ (messages | selectattr('role', 'equalto', 'user') | list)[-1].content }}", nil, "only"},
		{"items filter keeps order", "{% for k, v in d | items %}{{ k }}={{ v }};{% endfor %}",
			map[string]any{"d": json.RawMessage(`{"z": 1, "a": 2, "m": 3}`)}, "z=1;a=2;m=3;"},
		{"dict methods keep order", "{{ d.keys() | join(',') }}|{{ d.values() | join(',') }}|{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}|{{ d.get('a') }}{{ d.get('x', '-') }}",
			map[string]any{"d": json.RawMessage(`{"z": 1, "a": 2}`)}, "z,a|1,2|z1a2|2-"},
		{"message content is a string", "{{ messages[0]['content'] is string }}{{ messages[0].content is string }}", nil, "TrueTrue"},
		{"is false only for False", "{{ undefined_var is false }}{{ '' is false }}{{ flag is false }}{{ flag is true }}",
			map[string]any{"flag": false}, "FalseFalseTrueFalse"},
		{"generation renders its body", "{% generation %}<{{ messages[0].content }}>{% endgeneration %}", nil, "<only>"},
		{"trim_blocks and lstrip_blocks", "a\n    {% if true %}\n  b\n    {% endif %}\nc", nil, "a\n  b\nc"},
		{"range is a list", "{% for i in range(5) %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}{{ range(1, 7, 2) | list }}", nil, "01[1, 3, 5]"},
		{"Go maps in sorted order", "{{ m | tojson }}", map[string]any{"m": map[string]any{"b": 1, "a": []string{"x"}}}, `{"a": ["x"], "b": 1}`},
		{"strftime_now", "{{ strftime_now('%Y') }}", nil, time.Now().Format("2006")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.source)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := tmpl.Render(one, Options{Vars: tc.vars})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestConcurrentRender renders every fixture from many goroutines at once
// and expects what a lone render gives; run it with -race.
func TestConcurrentRender(t *testing.T) {
	cases := familyCases()
	templates := map[string]*Template{}
	for _, tc := range cases {
		if templates[tc.fixture] == nil {
			templates[tc.fixture] = loadTemplate(t, tc.fixture)
		}
	}
	render := func(tc familyCase, i int) (string, error) {
		messages := append([]Message(nil), tc.messages...)
		last := &messages[len(messages)-1]
		last.Content = fmt.Sprintf("%s #%d", last.Content, i)
		return templates[tc.fixture].Render(messages, tc.opts)
	}
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				tc := cases[(w+r)%len(cases)]
				i := w*rounds + r
				got, err := render(tc, i)
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
					return
				}
				want := fmt.Sprintf(" #%d", i)
				if !strings.Contains(got, want) {
					t.Errorf("%s: render %d lost its own message:\n%q", tc.name, i, got)
				}
			}
		})
	}
	wg.Wait()
	// Rejections, too, stay with the render that raised them.
	gemma := loadTemplate(t, "gemma-2-2b-it")
	var rejectWG sync.WaitGroup
	for w := range workers {
		rejectWG.Go(func() {
			messages := multiTurn
			if w%2 == 0 {
				messages = systemAndUser
			}
			_, err := gemma.Render(messages, Options{})
			if (w%2 == 0) != errors.Is(err, ErrRejected) {
				t.Errorf("worker %d: err = %v", w, err)
			}
		})
	}
	rejectWG.Wait()
}

func TestRenderToolRoundTrip(t *testing.T) {
	history := []Message{
		{Role: "user", Content: "Weather in Zürich?"},
		{Role: "assistant", ToolCalls: []ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Zürich","days":2}`}}},
		{Role: "tool", ToolCallID: "call_1", Name: "get_weather", Content: `{"temp":21}`},
	}
	tests := []struct {
		fixture string
		vars    map[string]any
		want    string
	}{
		{"qwen2.5-7b-instruct", nil,
			"<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
				"<|im_start|>user\nWeather in Zürich?<|im_end|>\n" +
				"<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"days\": 2}}\n</tool_call><|im_end|>\n" +
				"<|im_start|>user\n<tool_response>\n{\"temp\":21}\n</tool_response><|im_end|>\n" +
				"<|im_start|>assistant\n"},
		{"llama-3.3-70b-instruct", map[string]any{"date_string": "01 Jan 2025"},
			"<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nWeather in Zürich?<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Zürich\", \"days\": 2}}<|eot_id|>" +
				"<|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"temp\\\":21}\"<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.fixture, func(t *testing.T) {
			got, err := loadTemplate(t, tc.fixture).Render(history, Options{AddGenerationPrompt: true, Vars: tc.vars})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("prompt differs\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}
