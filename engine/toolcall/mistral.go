package toolcall

import "strings"

const (
	mistralArgs   = "[ARGS]"
	mistralCallID = "[CALL_ID]"
)

// mistralBody reads what follows [TOOL_CALLS]: a JSON array of calls (v3
// tokenizer), or name[ARGS]{...} and name[CALL_ID]id[ARGS]{...} (v11+).
func (s *Stream) mistralBody(final bool) bool {
	t := trimSpaceLeft(s.buf)
	skip := len(s.buf) - len(t)
	if t == "" {
		if final {
			return s.fail(len(s.buf))
		}
		return false
	}
	if t[0] == '[' || t[0] == '{' {
		n := jsonEnd(t)
		if n < 0 {
			if final {
				return s.fail(len(s.buf))
			}
			return false
		}
		calls, ok := callsFromJSON([]byte(t[:n]))
		if !ok {
			return s.fail(skip + n)
		}
		return s.mistralDone(skip+n, calls)
	}
	return s.mistralNamed(t, skip, final)
}

func (s *Stream) mistralNamed(t string, skip int, final bool) bool {
	i := 0
	for i < len(t) && isNameByte(t[i]) {
		i++
	}
	if i == len(t) {
		return s.waitOrFail(final)
	}
	if t[i] != '[' || i == 0 {
		return s.fail(skip + i)
	}
	name, rest, id := t[:i], t[i:], ""
	if strings.HasPrefix(rest, mistralCallID) {
		rest = rest[len(mistralCallID):]
		j := strings.IndexByte(rest, '[')
		if j < 0 {
			return s.waitOrFail(final)
		}
		id, rest = rest[:j], rest[j:]
	}
	if !strings.HasPrefix(rest, mistralArgs) {
		if !final && (strings.HasPrefix(mistralArgs, rest) || strings.HasPrefix(mistralCallID, rest)) {
			return false
		}
		return s.fail(skip + i)
	}
	rest = rest[len(mistralArgs):]
	args := trimSpaceLeft(rest)
	if args == "" {
		return s.waitOrFail(final)
	}
	n := jsonEnd(args)
	if args[0] != '{' {
		n = 0
	}
	if n < 0 {
		return s.waitOrFail(final)
	}
	used := len(s.buf) - len(args) + n
	a, ok := argumentsJSON([]byte(args[:n]))
	if !ok {
		return s.fail(used)
	}
	return s.mistralDone(used, []parsedCall{{id: id, name: name, args: a}})
}

func (s *Stream) waitOrFail(final bool) bool {
	if final {
		return s.fail(len(s.buf))
	}
	return false
}

func (s *Stream) mistralDone(n int, calls []parsedCall) bool {
	s.buf = s.buf[n:]
	s.state = stateText
	s.calls(calls)
	return true
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}
