package toolcall

import "strings"

// Event is one piece of streamed output: content text, or a tool-call delta
// when ToolCall is set.
type Event struct {
	Content  string
	ToolCall *CallDelta
}

// CallDelta is a tool-call fragment as OpenAI streams it in delta.tool_calls.
// A call's first delta carries Index, ID and Name; the next carry Index and
// Arguments fragments. This package validates a call before announcing it,
// so every call comes as two deltas: the header, then all its arguments.
type CallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

type streamState int

const (
	stateText  streamState = iota // content, watching for a call marker
	stateBody                     // after a call marker
	stateWhole                    // the reply may be bare JSON: hold it to the end
)

// Stream reads a reply as it is generated. Content is released as soon as it
// can no longer start a call: only a possible marker prefix ("<tool_c",
// "[TOOL_") and whitespace that may turn out to sit next to a call are held.
// Calls are released whole once their JSON completes and validates, so a
// stream never announces a call that later turns out to be text; for Llama 3
// and Generic replies that begin with JSON the whole reply is held, since
// only its end tells a call list from a JSON answer. Not safe for concurrent
// use.
type Stream struct {
	format    Format
	buf       string
	state     streamState
	started   bool   // non-space content seen: the reply is not bare JSON
	afterCall bool   // drop whitespace that follows a call
	heldSpace string // whitespace trimmed before the current marker
	next      int    // index of the next call
	events    []Event
}

// NewStream returns a parser for a reply in format f.
func NewStream(f Format) *Stream { return &Stream{format: f} }

// Write feeds generated text and returns the events it completes.
func (s *Stream) Write(delta string) []Event {
	s.buf += delta
	return s.drain(false)
}

// Close ends the reply and returns the remaining events: held content, and a
// call whose closing marker never came if its JSON is complete.
func (s *Stream) Close() []Event {
	return s.drain(true)
}

func (s *Stream) drain(final bool) []Event {
	for s.step(final) {
	}
	ev := s.events
	s.events = nil
	return ev
}

// step makes one decision on the buffer and reports whether it progressed.
func (s *Stream) step(final bool) bool {
	switch s.state {
	case stateBody:
		return s.body(final)
	case stateWhole:
		return s.whole(final)
	default:
		return s.text(final)
	}
}

func (s *Stream) content(text string) {
	if text == "" {
		return
	}
	if n := len(s.events); n > 0 && s.events[n-1].ToolCall == nil {
		s.events[n-1].Content += text
		return
	}
	s.events = append(s.events, Event{Content: text})
}

func (s *Stream) calls(calls []parsedCall) {
	for _, c := range calls {
		id := c.id
		if id == "" {
			id = newID(s.format)
		}
		s.events = append(s.events,
			Event{ToolCall: &CallDelta{Index: s.next, ID: id, Name: c.name}},
			Event{ToolCall: &CallDelta{Index: s.next, Arguments: c.args}})
		s.next++
	}
	s.afterCall = true
	s.heldSpace = ""
}

// fail releases the first n bytes of the buffer, with the marker that
// started them, as content, and goes back to reading text.
func (s *Stream) fail(n int) bool {
	s.content(s.heldSpace + s.marker() + s.buf[:n])
	s.buf = s.buf[n:]
	s.heldSpace = ""
	s.afterCall = false
	s.state = stateText
	return true
}

func (s *Stream) marker() string {
	switch s.format {
	case Hermes:
		return "<tool_call>"
	case Llama3:
		return "<|python_tag|>"
	case Mistral:
		return "[TOOL_CALLS]"
	}
	return ""
}

func (s *Stream) text(final bool) bool {
	if s.afterCall {
		s.buf = trimSpaceLeft(s.buf)
		if s.buf == "" {
			return false
		}
		s.afterCall = false
	}
	if !s.started && (s.format == Llama3 || s.format == Generic) {
		if wait, whole := s.bareJSON(final); wait {
			return false
		} else if whole {
			s.state = stateWhole
			return true
		}
	}
	m := s.marker()
	if i := strings.Index(s.buf, m); m != "" && i >= 0 {
		before := s.buf[:i]
		kept := trimSpaceRight(before)
		s.content(kept)
		s.heldSpace = before[len(kept):]
		s.buf = s.buf[i+len(m):]
		s.started = true
		s.state = stateBody
		return true
	}
	n := len(s.buf)
	if !final {
		n -= markerPrefix(s.buf, m)
		for n > 0 && isSpace(s.buf[n-1]) {
			n--
		}
	}
	if n > 0 {
		s.started = true
	}
	s.content(s.buf[:n])
	s.buf = s.buf[n:]
	return false
}

// bareJSON tells, at the start of a Llama 3 or Generic reply, whether to
// wait for more text and whether the reply may be bare JSON.
func (s *Stream) bareJSON(final bool) (wait, whole bool) {
	t := trimSpaceLeft(s.buf)
	switch {
	case t == "":
		return !final, false
	case t[0] == '{' || t[0] == '[':
		return false, true
	case s.format == Generic && strings.HasPrefix(t, "```"):
		return false, true
	case s.format == Generic && strings.HasPrefix("```", t):
		return !final, false
	}
	return false, false
}

// markerPrefix returns the length of the longest end of s that is a proper
// prefix of marker.
func markerPrefix(s, marker string) int {
	for n := min(len(s), len(marker)-1); n > 0; n-- {
		if strings.HasSuffix(s, marker[:n]) {
			return n
		}
	}
	return 0
}

func (s *Stream) body(final bool) bool {
	switch s.format {
	case Hermes:
		return s.hermesBody(final)
	case Mistral:
		return s.mistralBody(final)
	default:
		return s.pythonTagBody(final)
	}
}

const hermesEnd = "</tool_call>"

func (s *Stream) hermesBody(final bool) bool {
	n := len(s.buf)
	inner := s.buf
	if i := strings.Index(s.buf, hermesEnd); i >= 0 {
		n, inner = i+len(hermesEnd), s.buf[:i]
	} else if !final {
		return false
	}
	calls, ok := callsFromJSON([]byte(inner))
	if !ok {
		return s.fail(n)
	}
	s.buf = s.buf[n:]
	s.state = stateText
	s.calls(calls)
	return true
}

func (s *Stream) whole(final bool) bool {
	if !final {
		return false
	}
	var calls []parsedCall
	var ok bool
	if s.format == Generic {
		calls, ok = callsFromJSON([]byte(unfence(s.buf)))
	} else {
		calls, ok = jsonCallList(s.buf)
	}
	s.state = stateText
	s.started = true
	if !ok {
		s.content(s.buf)
		s.buf = ""
		return false
	}
	s.buf = ""
	s.calls(calls)
	return false
}

// unfence strips a ``` or ```json fence around text.
func unfence(text string) string {
	t := strings.TrimSpace(text)
	if !strings.HasPrefix(t, "```") || !strings.HasSuffix(t, "```") || len(t) < 6 {
		return text
	}
	t = t[3 : len(t)-3]
	t = strings.TrimPrefix(t, "json")
	return t
}

// jsonCallList reads call objects (or arrays of them) separated by ';',
// commas or whitespace, with nothing else around them.
func jsonCallList(text string) ([]parsedCall, bool) {
	var calls []parsedCall
	for {
		text = strings.TrimLeft(text, " \t\r\n;,")
		if text == "" {
			return calls, len(calls) > 0
		}
		if text[0] != '{' && text[0] != '[' {
			return nil, false
		}
		n := jsonEnd(text)
		if n < 0 {
			return nil, false
		}
		more, ok := callsFromJSON([]byte(text[:n]))
		if !ok {
			return nil, false
		}
		calls = append(calls, more...)
		text = text[n:]
	}
}

// pythonTagBody reads what follows Llama 3's <|python_tag|>: JSON calls or
// built-in calls such as brave_search.call(query="..."). The tag ends the
// reply, so it waits for the end.
func (s *Stream) pythonTagBody(final bool) bool {
	if !final {
		return false
	}
	rest := strings.TrimSuffix(strings.TrimSpace(s.buf), "<|eom_id|>")
	calls, ok := jsonCallList(rest)
	if !ok {
		calls, ok = builtinCalls(rest)
	}
	if !ok {
		return s.fail(len(s.buf))
	}
	s.buf = ""
	s.state = stateText
	s.calls(calls)
	return false
}
