package toolcall

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Tool is a function the model may be forced to call.
type Tool struct {
	Name string
	// Arguments is a GBNF grammar (llama.cpp syntax) whose root rule matches
	// the tool's arguments object: what native/llamacpp.SchemaToGrammar
	// returns for the tool's parameters schema. Empty allows any JSON object.
	// Its rules are renamed so that several tools' grammars can share one.
	Arguments string
}

// Choice says which calls a grammar forces, after OpenAI's tool_choice.
type Choice struct {
	// Function names the one tool to call ("tool_choice": {"function":
	// {"name": ...}}): the grammar allows exactly one call of it. Empty is
	// "required": one or more calls of any of the tools.
	Function string
}

// Errors Grammar returns; callers map them to a bad request.
var (
	ErrNoTools     = errors.New("toolcall: tool_choice needs at least one tool")
	ErrUnknownTool = errors.New("toolcall: tool_choice names a function that is not in tools")
)

// Grammar returns a GBNF grammar that forces the model to answer with tool
// calls written in format f, whose arguments match each tool's arguments
// grammar, so that Parse always finds the calls. Calls are written the way
// Parse reads them: Hermes <tool_call> blocks, Llama 3 JSON with
// "parameters" separated by "; ", Mistral's [TOOL_CALLS][...] array, and a
// JSON array for Generic. Mistral's [TOOL_CALLS] is a control token: the
// grammar spells it as text, so the sampler must match special tokens by
// their text.
func Grammar(tools []Tool, choice Choice, f Format) (string, error) {
	if len(tools) == 0 {
		return "", ErrNoTools
	}
	var b strings.Builder
	var alts []string
	needJSON := false
	for i, t := range tools {
		if choice.Function != "" && t.Name != choice.Function {
			continue
		}
		if t.Name == "" {
			return "", fmt.Errorf("toolcall: tool %d has no name", i)
		}
		args := "json-object"
		if strings.TrimSpace(t.Arguments) == "" {
			needJSON = true
		} else {
			prefix := fmt.Sprintf("t%d-", i)
			renamed, err := renameRules(t.Arguments, prefix)
			if err != nil {
				return "", fmt.Errorf("toolcall: arguments grammar of %s: %w", t.Name, err)
			}
			b.WriteString(renamed)
			args = prefix + "root"
		}
		rule := fmt.Sprintf("call-%d", i)
		fmt.Fprintf(&b, "%s ::= %s %s \"}\"\n", rule, callHead(f, t.Name), args)
		alts = append(alts, rule)
	}
	if len(alts) == 0 {
		return "", fmt.Errorf("%w: %q", ErrUnknownTool, choice.Function)
	}
	if needJSON {
		b.WriteString(jsonGrammar)
	}
	fmt.Fprintf(&b, "call ::= %s\n", strings.Join(alts, " | "))
	b.WriteString(rootRule(f, choice.Function == ""))
	return b.String(), nil
}

// callHead is the literal that opens a call object, up to its arguments.
func callHead(f Format, name string) string {
	key := "arguments"
	if f == Llama3 {
		key = "parameters"
	}
	return gbnfLiteral(fmt.Sprintf(`{"name": %s, %q: `, jsonString(name), key))
}

func rootRule(f Format, many bool) string {
	one, sep, open, close := "call", "", "", ""
	switch f {
	case Hermes:
		one, sep = `"<tool_call>\n" call "\n</tool_call>"`, `"\n"`
	case Llama3:
		sep = `"; "`
	case Mistral:
		open, close, sep = `"[TOOL_CALLS]["`, `"]"`, `", "`
	default:
		open, close, sep = `"["`, `"]"`, `", "`
	}
	body := one
	if many {
		body = fmt.Sprintf("%s (%s %s)*", one, sep, one)
	}
	parts := []string{"root ::="}
	for _, p := range []string{open, body, close} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ") + "\n"
}

// jsonGrammar matches any JSON object, for tools without a schema.
const jsonGrammar = `json-object ::= "{" json-ws ( json-string ":" json-ws json-value ( "," json-ws json-string ":" json-ws json-value )* )? "}" json-ws
json-value ::= json-object | json-array | json-string | json-number | ("true" | "false" | "null") json-ws
json-array ::= "[" json-ws ( json-value ( "," json-ws json-value )* )? "]" json-ws
json-string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" json-ws
json-number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? json-ws
json-ws ::= | " " | "\n" [ \t]{0,20}
`

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// gbnfLiteral quotes s as a GBNF string literal.
func gbnfLiteral(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// renameRules prefixes every rule name that grammar defines, where it is
// defined and wherever it is referenced, leaving literals, character classes
// and comments alone. The grammar must define root.
func renameRules(grammar, prefix string) (string, error) {
	toks := gbnfTokens(grammar)
	defined := map[string]bool{}
	for i, t := range toks {
		if isIdent(t) && nextNonSpace(toks, i+1) == "::=" {
			defined[t] = true
		}
	}
	if !defined["root"] {
		names := make([]string, 0, len(defined))
		for n := range defined {
			names = append(names, n)
		}
		sort.Strings(names)
		return "", fmt.Errorf("no root rule (rules: %s)", strings.Join(names, ", "))
	}
	var b strings.Builder
	for _, t := range toks {
		if defined[t] {
			b.WriteString(prefix)
		}
		b.WriteString(t)
	}
	out := b.String()
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out, nil
}

func nextNonSpace(toks []string, i int) string {
	for ; i < len(toks); i++ {
		if strings.TrimSpace(toks[i]) != "" {
			return toks[i]
		}
	}
	return ""
}

func isIdent(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// gbnfTokens splits a grammar into tokens whose concatenation is the
// grammar: identifiers, "::=", quoted literals, [classes], comments, and
// single other bytes.
func gbnfTokens(g string) []string {
	var toks []string
	for len(g) > 0 {
		n := 1
		switch c := g[0]; {
		case c == '"' || c == '[':
			n = quotedEnd(g)
		case c == '#':
			if n = strings.IndexByte(g, '\n'); n < 0 {
				n = len(g)
			}
		case strings.HasPrefix(g, "::="):
			n = 3
		case isIdent(g[:1]):
			for n < len(g) && isIdent(g[n:n+1]) {
				n++
			}
		}
		toks = append(toks, g[:n])
		g = g[n:]
	}
	return toks
}

// quotedEnd returns the length of the "literal" or [class] g starts with.
func quotedEnd(g string) int {
	end := byte('"')
	if g[0] == '[' {
		end = ']'
	}
	for i := 1; i < len(g); i++ {
		switch g[i] {
		case '\\':
			i++
		case end:
			return i + 1
		}
	}
	return len(g)
}
