package toolcall

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// builtinCalls reads Llama 3's built-in tool calls after <|python_tag|>:
// name.call(key="value", n=1) separated by ';' or newlines. Values are
// Python literals: quoted strings, numbers, True, False and None. The call's
// name is the tool's (brave_search, wolfram_alpha).
func builtinCalls(text string) ([]parsedCall, bool) {
	var calls []parsedCall
	for {
		text = strings.TrimLeft(text, " \t\r\n;")
		if text == "" {
			return calls, len(calls) > 0
		}
		c, rest, ok := builtinCall(text)
		if !ok {
			return nil, false
		}
		calls = append(calls, c)
		text = rest
	}
}

func builtinCall(text string) (parsedCall, string, bool) {
	dot := strings.Index(text, ".call(")
	if dot <= 0 {
		return parsedCall{}, "", false
	}
	name := text[:dot]
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) || name[i] == '.' || name[i] == '-' {
			return parsedCall{}, "", false
		}
	}
	rest := text[dot+len(".call("):]
	args := map[string]any{}
	var keys []string
	for {
		rest = trimSpaceLeft(rest)
		if strings.HasPrefix(rest, ")") {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return parsedCall{}, "", false
		}
		key := strings.TrimSpace(rest[:eq])
		val, after, ok := pythonLiteral(trimSpaceLeft(rest[eq+1:]))
		if !ok || key == "" {
			return parsedCall{}, "", false
		}
		if _, dup := args[key]; !dup {
			keys = append(keys, key)
		}
		args[key] = val
		rest = trimSpaceLeft(after)
		if strings.HasPrefix(rest, ",") {
			rest = rest[1:]
		} else if !strings.HasPrefix(rest, ")") {
			return parsedCall{}, "", false
		}
	}
	return parsedCall{name: name, args: orderedJSON(keys, args)}, rest[1:], true
}

// orderedJSON writes args as a JSON object with keys in the order written.
func orderedJSON(keys []string, args map[string]any) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(args[k])
		b.Write(kj)
		b.WriteByte(':')
		b.Write(vj)
	}
	b.WriteByte('}')
	return b.String()
}

// pythonLiteral reads one literal at the start of s.
func pythonLiteral(s string) (any, string, bool) {
	if s == "" {
		return nil, "", false
	}
	if q := s[0]; q == '"' || q == '\'' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\' && i+1 < len(s):
				i++
				b.WriteByte(unescape(s[i]))
			case c == q:
				return b.String(), s[i+1:], true
			default:
				b.WriteByte(c)
			}
		}
		return nil, "", false
	}
	end := strings.IndexAny(s, ",)")
	if end < 0 {
		return nil, "", false
	}
	word := strings.TrimSpace(s[:end])
	switch word {
	case "True":
		return true, s[end:], true
	case "False":
		return false, s[end:], true
	case "None":
		return nil, s[end:], true
	}
	if n, err := strconv.ParseFloat(word, 64); err == nil && !math.IsInf(n, 0) && !math.IsNaN(n) {
		return json.Number(strconv.FormatFloat(n, 'g', -1, 64)), s[end:], true
	}
	return nil, "", false
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	}
	return c
}
