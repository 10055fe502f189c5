package toolcall

import (
	"errors"
	"strings"
	"testing"
)

// weatherArgs is what llama.cpp's schema converter returns for
// {"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["celsius","fahrenheit"]}},"required":["city"]}.
const weatherArgs = `char ::= [^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})
city-kv ::= "\"city\"" space ":" space string
root ::= "{" space city-kv ( "," space unit-kv )? "}" space
space ::= | " " | "\n" [ \t]{0,20}
string ::= "\"" char* "\"" space
unit ::= ("\"celsius\"" | "\"fahrenheit\"") space
unit-kv ::= "\"unit\"" space ":" space unit
`

func TestGrammar(t *testing.T) {
	tools := []Tool{{Name: "get_weather", Arguments: weatherArgs}, {Name: "now"}}
	tests := []struct {
		format Format
		choice Choice
		root   string
	}{
		{Hermes, Choice{}, `root ::= "<tool_call>\n" call "\n</tool_call>" ("\n" "<tool_call>\n" call "\n</tool_call>")*`},
		{Hermes, Choice{Function: "now"}, `root ::= "<tool_call>\n" call "\n</tool_call>"`},
		{Llama3, Choice{}, `root ::= call ("; " call)*`},
		{Mistral, Choice{}, `root ::= "[TOOL_CALLS][" call (", " call)* "]"`},
		{Generic, Choice{Function: "get_weather"}, `root ::= "[" call "]"`},
	}
	for _, tt := range tests {
		g, err := Grammar(tools, tt.choice, tt.format)
		if err != nil {
			t.Fatalf("%v %+v: %v", tt.format, tt.choice, err)
		}
		if !strings.Contains(g, tt.root+"\n") {
			t.Errorf("%v %+v: no %q in\n%s", tt.format, tt.choice, tt.root, g)
		}
		checkRulesDefined(t, g)
		if tt.choice.Function == "now" && strings.Contains(g, "get_weather") {
			t.Errorf("named choice allows other tools:\n%s", g)
		}
	}
	g, _ := Grammar(tools, Choice{}, Llama3)
	for _, want := range []string{
		`call-0 ::= "{\"name\": \"get_weather\", \"parameters\": " t0-root "}"`,
		`t0-city-kv ::= "\"city\"" t0-space ":" t0-space t0-string`,
		`t0-char ::= [^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})`,
		`call-1 ::= "{\"name\": \"now\", \"parameters\": " json-object "}"`,
	} {
		if !strings.Contains(g, want+"\n") {
			t.Errorf("grammar lacks %q:\n%s", want, g)
		}
	}
}

// checkRulesDefined checks that every rule the grammar references is
// defined exactly once.
func checkRulesDefined(t *testing.T, g string) {
	t.Helper()
	toks := gbnfTokens(g)
	defined := map[string]int{}
	for i, tok := range toks {
		if isIdent(tok) && nextNonSpace(toks, i+1) == "::=" {
			defined[tok]++
		}
	}
	for i, tok := range toks {
		if !isIdent(tok) || nextNonSpace(toks, i+1) == "::=" || strings.Trim(tok, "0123456789") == "" {
			continue
		}
		if defined[tok] != 1 {
			t.Errorf("rule %s referenced, defined %d times in\n%s", tok, defined[tok], g)
		}
	}
}

func TestGrammarErrors(t *testing.T) {
	if _, err := Grammar(nil, Choice{}, Hermes); !errors.Is(err, ErrNoTools) {
		t.Errorf("no tools: %v", err)
	}
	tools := []Tool{{Name: "a"}}
	if _, err := Grammar(tools, Choice{Function: "b"}, Hermes); !errors.Is(err, ErrUnknownTool) {
		t.Errorf("unknown function: %v", err)
	}
	if _, err := Grammar([]Tool{{Name: "a", Arguments: `obj ::= "{}"`}}, Choice{}, Hermes); err == nil {
		t.Error("grammar without root accepted")
	}
}
