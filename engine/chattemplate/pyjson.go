package chattemplate

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// jsonOptions are the json.dumps arguments templates pass to tojson.
type jsonOptions struct {
	ensureASCII bool
	sortKeys    bool
	// indent is nil for json.dumps' indent=None (everything on one line).
	indent *string
	// itemSep and keySep are json.dumps' separators; empty means its
	// default, which depends on indent.
	itemSep, keySep string
}

// setIndent reads indent= as json.dumps does: None, a number of spaces or
// the string to indent with.
func (o *jsonOptions) setIndent(v *exec.Value) error {
	switch {
	case v == nil || v.IsNil():
		o.indent = nil
	case v.IsString():
		s := v.String()
		o.indent = &s
	case v.IsInteger():
		s := strings.Repeat(" ", max(v.Integer(), 0))
		o.indent = &s
	default:
		return fmt.Errorf("tojson: indent must be None, an integer or a string, not %s", v.String())
	}
	return nil
}

// setSeparators reads separators= as json.dumps does: None or an
// (item_separator, key_separator) pair.
func (o *jsonOptions) setSeparators(v *exec.Value) error {
	if v == nil || v.IsNil() {
		return nil
	}
	if !v.IsList() || v.Len() != 2 {
		return errors.New("tojson: separators must be a pair of strings")
	}
	o.itemSep = v.Index(0).String()
	o.keySep = v.Index(1).String()
	return nil
}

// marshalJSON writes v as Python's json.dumps(v, **opts) would: object
// keys in the dict's own order, ", " and ": " between items on one line,
// nothing HTML-escaped, floats as Python's repr.
func marshalJSON(v *exec.Value, opts jsonOptions) (string, error) {
	if opts.itemSep == "" && opts.keySep == "" {
		opts.itemSep, opts.keySep = ", ", ": "
		if opts.indent != nil {
			opts.itemSep = ","
		}
	}
	var b strings.Builder
	enc := jsonEncoder{out: &b, opts: opts}
	if err := enc.value(v.Interface(), 0); err != nil {
		return "", fmt.Errorf("tojson: %w", err)
	}
	return b.String(), nil
}

// maxJSONDepth stops a self-referencing value from recursing forever, as
// json.dumps' check_circular does.
const maxJSONDepth = 512

type jsonEncoder struct {
	out  *strings.Builder
	opts jsonOptions
}

func (e *jsonEncoder) value(v any, depth int) error {
	if depth > maxJSONDepth {
		return errors.New("circular reference detected")
	}
	switch v := v.(type) {
	case nil:
		e.out.WriteString("null")
		return nil
	case *exec.Value:
		return e.value(v.Interface(), depth)
	case reflect.Value:
		if !v.IsValid() {
			e.out.WriteString("null")
			return nil
		}
		return e.value(v.Interface(), depth)
	case *exec.Dict:
		if v == nil {
			e.out.WriteString("null")
			return nil
		}
		return e.object(v.Pairs, depth)
	case exec.Dict:
		return e.object(v.Pairs, depth)
	case string:
		e.string(v)
		return nil
	case bool:
		e.out.WriteString(strconv.FormatBool(v))
		return nil
	case error:
		return v
	}

	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.out.WriteString(strconv.FormatInt(rv.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.out.WriteString(strconv.FormatUint(rv.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		e.out.WriteString(pyFloat(rv.Float()))
	case reflect.String:
		e.string(rv.String())
	case reflect.Bool:
		e.out.WriteString(strconv.FormatBool(rv.Bool()))
	case reflect.Slice, reflect.Array:
		return e.array(rv, depth)
	case reflect.Map:
		return e.mapObject(rv, depth)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			e.out.WriteString("null")
			return nil
		}
		return e.value(rv.Elem().Interface(), depth)
	default:
		return fmt.Errorf("object of type %T is not JSON serializable", v)
	}
	return nil
}

// newline starts a new line indented to depth, when indenting at all.
func (e *jsonEncoder) newline(depth int) {
	if e.opts.indent == nil {
		return
	}
	e.out.WriteByte('\n')
	for range depth {
		e.out.WriteString(*e.opts.indent)
	}
}

func (e *jsonEncoder) array(rv reflect.Value, depth int) error {
	if rv.Len() == 0 {
		e.out.WriteString("[]")
		return nil
	}
	e.out.WriteByte('[')
	for i := range rv.Len() {
		if i > 0 {
			e.out.WriteString(e.opts.itemSep)
		}
		e.newline(depth + 1)
		if err := e.value(rv.Index(i).Interface(), depth+1); err != nil {
			return err
		}
	}
	e.newline(depth)
	e.out.WriteByte(']')
	return nil
}

// mapObject writes a Go map, which has no order, with sorted keys.
func (e *jsonEncoder) mapObject(rv reflect.Value, depth int) error {
	pairs := make([]*exec.Pair, 0, rv.Len())
	for _, k := range rv.MapKeys() {
		pairs = append(pairs, &exec.Pair{Key: exec.ToValue(k), Value: exec.ToValue(rv.MapIndex(k))})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Key.String() < pairs[j].Key.String() })
	return e.object(pairs, depth)
}

func (e *jsonEncoder) object(pairs []*exec.Pair, depth int) error {
	if len(pairs) == 0 {
		e.out.WriteString("{}")
		return nil
	}
	if e.opts.sortKeys {
		pairs = append([]*exec.Pair(nil), pairs...)
		sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].Key.String() < pairs[j].Key.String() })
	}
	e.out.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			e.out.WriteString(e.opts.itemSep)
		}
		e.newline(depth + 1)
		key, err := jsonKey(p.Key)
		if err != nil {
			return err
		}
		e.string(key)
		e.out.WriteString(e.opts.keySep)
		if err := e.value(p.Value, depth+1); err != nil {
			return err
		}
	}
	e.newline(depth)
	e.out.WriteByte('}')
	return nil
}

// jsonKey converts a dict key as json.dumps does: strings stay, numbers,
// booleans and None become their JSON text.
func jsonKey(k *exec.Value) (string, error) {
	switch {
	case k == nil || k.IsNil():
		return "null", nil
	case k.IsString():
		return k.String(), nil
	case k.IsBool():
		return strconv.FormatBool(k.Bool()), nil
	case k.IsInteger():
		return strconv.Itoa(k.Integer()), nil
	case k.IsFloat():
		return pyFloat(k.Float()), nil
	}
	return "", fmt.Errorf("keys must be str, int, float, bool or None, not %s", k.String())
}

// string writes s quoted and escaped as json.dumps does: only the quote,
// the backslash and control characters escaped, and with ensure_ascii
// everything beyond ASCII as \uXXXX (surrogate pairs above U+FFFF).
func (e *jsonEncoder) string(s string) {
	const hex = "0123456789abcdef"
	escape := func(r rune) {
		e.out.WriteString(`\u`)
		e.out.WriteByte(hex[r>>12&0xf])
		e.out.WriteByte(hex[r>>8&0xf])
		e.out.WriteByte(hex[r>>4&0xf])
		e.out.WriteByte(hex[r&0xf])
	}
	e.out.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			e.out.WriteString(`\"`)
		case '\\':
			e.out.WriteString(`\\`)
		case '\n':
			e.out.WriteString(`\n`)
		case '\r':
			e.out.WriteString(`\r`)
		case '\t':
			e.out.WriteString(`\t`)
		case '\b':
			e.out.WriteString(`\b`)
		case '\f':
			e.out.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				escape(r)
			case e.opts.ensureASCII && r > 0x7e:
				if r > 0xffff {
					hi, lo := utf16.EncodeRune(r)
					escape(hi)
					escape(lo)
				} else {
					escape(r)
				}
			default:
				e.out.WriteRune(r)
			}
		}
	}
	e.out.WriteByte('"')
}

// pyFloat formats f as Python's repr(float): the shortest digits that read
// back the same, positional for exponents from -4 to 15 with at least one
// decimal, scientific otherwise ("1e-05", "1e+16").
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	sci := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(sci[strings.IndexByte(sci, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return sci
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsRune(s, '.') {
		s += ".0"
	}
	return s
}
