package chattemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// list is a template list that, like a Python list, takes negative indexes
// from the end: gonja's own lists cannot reach x[-1] when len(x) is 1.
type list []any

// GetItem implements exec.ItemGetter, which gonja asks before its own
// indexing.
func (l list) GetItem(key any) (*exec.Value, bool) {
	i, ok := key.(int)
	if !ok {
		return exec.AsValue(nil), false
	}
	if i < 0 {
		i += len(l)
	}
	if i < 0 || i >= len(l) {
		return exec.AsValue(nil), false
	}
	return exec.ToValue(l[i]), true
}

// asList copies any Go slice or array into a list; other values pass as
// they are.
func asList(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return v
	}
	out := make(list, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out
}

// dictPairs returns a dict's entries in order: insertion order for gonja's
// ordered Dict, sorted keys for a Go map, which has none.
func dictPairs(v *exec.Value) []*exec.Pair {
	switch d := v.Interface().(type) {
	case *exec.Dict:
		return d.Pairs
	case exec.Dict:
		return d.Pairs
	}
	var pairs []*exec.Pair
	for _, key := range v.Keys() {
		value, _ := v.GetItem(key.Interface())
		pairs = append(pairs, &exec.Pair{Key: key, Value: value})
	}
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].Key.String() < pairs[j].Key.String() })
	return pairs
}

// itemPairs is dict.items(): [key, value] lists that for-loops unpack.
func itemPairs(v *exec.Value) list {
	pairs := dictPairs(v)
	out := make(list, len(pairs))
	for i, p := range pairs {
		out[i] = list{p.Key, p.Value}
	}
	return out
}

// templateValue converts a Go value from Options.Vars into what templates
// expect: lists that index like Python's and dicts that keep their order.
func templateValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, string, bool, int, int64, float64, *exec.Dict, list:
		return v, nil
	case json.RawMessage:
		return decodeJSON(v)
	case Message:
		return messageDict(v), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return v, nil
	case reflect.Slice, reflect.Array:
		out := make(list, rv.Len())
		for i := range out {
			item, err := templateValue(rv.Index(i).Interface())
			if err != nil {
				return nil, err
			}
			out[i] = item
		}
		return out, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("map keys must be strings, not %s", rv.Type().Key())
		}
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		dict := exec.NewDict()
		for _, k := range keys {
			item, err := templateValue(rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key())).Interface())
			if err != nil {
				return nil, err
			}
			dict.Pairs = append(dict.Pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(item)})
		}
		return dict, nil
	case reflect.Pointer:
		if rv.IsNil() {
			return nil, nil
		}
		return templateValue(rv.Elem().Interface())
	}
	return nil, fmt.Errorf("unsupported type %T", v)
}

// messageDict is a message as templates read it: a dict of role, content and,
// only when set, tool_calls, tool_call_id and name, since templates test
// "'tool_calls' in message".
func messageDict(m Message) *exec.Dict {
	d := &exec.Dict{Pairs: []*exec.Pair{
		{Key: exec.AsValue("role"), Value: exec.AsValue(m.Role)},
		{Key: exec.AsValue("content"), Value: exec.AsValue(m.Content)},
	}}
	if len(m.ToolCalls) > 0 {
		calls := make(list, len(m.ToolCalls))
		for i, c := range m.ToolCalls {
			calls[i] = toolCallDict(c)
		}
		d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue("tool_calls"), Value: exec.AsValue(calls)})
	}
	if m.ToolCallID != "" {
		d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue("tool_call_id"), Value: exec.AsValue(m.ToolCallID)})
	}
	if m.Name != "" {
		d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue("name"), Value: exec.AsValue(m.Name)})
	}
	return d
}

// toolCallDict is a call in OpenAI's shape, {"id", "type", "function":
// {"name", "arguments"}}, its arguments decoded as Hugging Face templates
// expect them.
func toolCallDict(c ToolCall) *exec.Dict {
	var args any = c.Arguments
	if decoded, err := decodeJSON([]byte(c.Arguments)); err == nil {
		args = decoded
	}
	fn := &exec.Dict{Pairs: []*exec.Pair{
		{Key: exec.AsValue("name"), Value: exec.AsValue(c.Name)},
		{Key: exec.AsValue("arguments"), Value: exec.AsValue(args)},
	}}
	return &exec.Dict{Pairs: []*exec.Pair{
		{Key: exec.AsValue("id"), Value: exec.AsValue(c.ID)},
		{Key: exec.AsValue("type"), Value: exec.AsValue("function")},
		{Key: exec.AsValue("function"), Value: exec.AsValue(fn)},
	}}
}

// decodeJSON decodes one JSON document into template values, keeping each
// object's key order as Python's json.loads does.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSONValue(dec)
	if err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode JSON: data after the first value")
	}
	return v, nil
}

func decodeJSONValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			dict := exec.NewDict()
			for dec.More() {
				keyTok, err := dec.Token()
				if err != nil {
					return nil, err
				}
				value, err := decodeJSONValue(dec)
				if err != nil {
					return nil, err
				}
				dict.Pairs = setPair(dict.Pairs, keyTok.(string), value)
			}
			_, err := dec.Token() // '}'
			return dict, err
		case '[':
			out := list{}
			for dec.More() {
				value, err := decodeJSONValue(dec)
				if err != nil {
					return nil, err
				}
				out = append(out, value)
			}
			_, err := dec.Token() // ']'
			return out, err
		}
		return nil, fmt.Errorf("unexpected %v", tok)
	case json.Number:
		return jsonNumber(tok), nil
	default: // string, bool, nil
		return tok, nil
	}
}

// setPair adds key to a dict, replacing an earlier value in place as
// Python does for a repeated key.
func setPair(pairs []*exec.Pair, key string, value any) []*exec.Pair {
	for _, p := range pairs {
		if p.Key.String() == key {
			p.Value = exec.AsValue(value)
			return pairs
		}
	}
	return append(pairs, &exec.Pair{Key: exec.AsValue(key), Value: exec.AsValue(value)})
}

// jsonNumber is an int when the literal is integral and fits, else a float,
// as json.loads gives int or float.
func jsonNumber(n json.Number) any {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.Atoi(s); err == nil {
			return i
		}
	}
	f, _ := n.Float64()
	return f
}
