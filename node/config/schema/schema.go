// Package schema checks a layered configuration against a tree of typed keys. Each layer (a
// TOML file, prefixed environment variables, command-line flags) is read on its own and every
// value parsed by its key's Field where it is read, so an error names the file, variable or flag
// it came from; an unknown key is reported with the key most likely meant. Every error about
// the configuration wraps ErrInvalid and is written for the user.
//
// The package knows no program's keys: node/config defines SYN4PSE's tree, defaults and the
// struct they decode into.
package schema

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Node is one level of the schema: a value (Field set) or a table. A table has fixed keys
// (Children), or entries under names the user chooses (Each), as in [models.<name>].
type Node struct {
	// Field, when set, makes the node a value.
	Field *Field
	// Children are the table's fixed keys.
	Children map[string]*Node
	// Each is the schema of every entry whose key is not one of Children.
	Each *Node
	// EntryName, when set, checks every key of the table, the names chosen for entries of
	// Each; its error follows the key's label in the message.
	EntryName func(key string) error
	// KeysAre says what the keys of Children are, for messages: "key" unless set. When set,
	// an unknown key is refused with KeysWant, the keys to offer, rather than a suggestion.
	KeysAre  string
	KeysWant []string
	// Aliases are keys people write by mistake, and the key they meant.
	Aliases map[string]string
}

// child is the schema of key inside table n, nil when the key is unknown.
func (n *Node) child(key string) *Node {
	if c, ok := n.Children[key]; ok {
		return c
	}
	return n.Each
}

// Kind says how a field's value is read and checked.
type Kind int

// The kinds of value a Field holds.
const (
	Int      Kind = iota // an integer in [Min, Max]
	Bool                 // true or false
	Duration             // a Go duration such as "30s", not negative
	Path                 // a file path: "~" expanded, a relative one resolved
	Choice               // one of Choices, any case
	Host                 // a host name or IP address, without a port
	List                 // a list of strings; the environment gives it comma-separated
	Size                 // a byte size: 8GiB, 512MB, a plain number of bytes, 0 for automatic
	Float                // a number >= 0, integer or not (a rate per second)
	String               // a string that Check accepts
	Custom               // any value that Parse accepts
)

// Field describes one value in the schema.
type Field struct {
	Kind      Kind
	Min, Max  int      // an Int's range; a positive Size's largest value when Max > 0
	Choices   []string // a Choice's values, or the items a List may hold when set
	BoolOnOff bool     // a Choice that also takes true/false for "on"/"off"
	EmptyOK   bool     // a Path whose "" means "the default place"
	Secret    bool     // a List whose values messages must never show (API keys)
	Positive  bool     // a Duration or Size that must be more than 0; a Size with Max > 0 at most Max bytes
	// Check, for a String, checks the string and returns the value kept; nil takes any string.
	Check func(s string) (string, error)
	// Parse, for a Custom, checks the raw value of any layer and returns the value kept.
	Parse func(raw any) (any, error)
}

// parse checks a raw value from any layer (TOML types from the file, strings from the
// environment, typed flag values) and returns it in the type the decoder expects. Relative
// paths are resolved against baseDir.
func (f *Field) parse(raw any, baseDir string) (any, error) {
	switch f.Kind {
	case Int:
		return f.parseInt(raw)
	case Bool:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string:
			if b, err := strconv.ParseBool(strings.TrimSpace(v)); err == nil {
				return b, nil
			}
		}
		return nil, fmt.Errorf("want true or false, got %s", describe(raw))
	case Duration:
		d, err := parseDuration(raw)
		if err == nil && f.Positive && d.(time.Duration) == 0 {
			return nil, fmt.Errorf("want a duration more than 0 such as \"30s\", got %s", describe(raw))
		}
		return d, err
	case Choice:
		return f.parseChoice(raw)
	case List:
		list, err := parseList(raw)
		if err != nil && f.Secret {
			return nil, errors.New("want a list of strings (the value is not shown: it is secret)")
		}
		if err == nil && f.Choices != nil {
			for _, item := range list.([]string) {
				if !slices.Contains(f.Choices, item) {
					return nil, fmt.Errorf("want a list of %s, got %q", strings.Join(f.Choices, ", "), item)
				}
			}
		}
		return list, err
	case Custom:
		return f.Parse(raw)
	case Float:
		return parseFloat(raw)
	case Size:
		n, err := ParseSize(fmt.Sprint(raw))
		if err != nil {
			return nil, err
		}
		if f.Positive && (n == 0 || f.Max > 0 && n > int64(f.Max)) {
			return nil, f.sizeRangeError(raw)
		}
		return n, nil
	}

	s, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("want a string, got %s", describe(raw))
	}
	switch f.Kind {
	case Path:
		if s == "" && f.EmptyOK {
			return "", nil
		}
		return parsePath(s, baseDir)
	case Host:
		return parseHost(s)
	case String:
		if f.Check == nil {
			return s, nil
		}
		checked, err := f.Check(s)
		if err != nil {
			return nil, err
		}
		return checked, nil
	}
	return s, nil
}

func (f *Field) parseInt(raw any) (any, error) {
	var n int64
	var err error
	switch v := raw.(type) {
	case int:
		n = int64(v)
	case int64:
		n = v
	case string:
		n, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	default:
		err = errors.New("not an integer")
	}
	if err != nil || n < int64(f.Min) || n > int64(f.Max) {
		return nil, fmt.Errorf("want an integer %s, got %s", f.intRange(), describe(raw))
	}
	return int(n), nil
}

// sizeRangeError is the error of a size out of a positive Size's range.
func (f *Field) sizeRangeError(raw any) error {
	if f.Max > 0 {
		return fmt.Errorf("want a size more than 0 and at most %d bytes, such as \"64MiB\", got %s", f.Max, describe(raw))
	}
	return fmt.Errorf("want a size more than 0 such as \"32MiB\", got %s", describe(raw))
}

// intRange says which integers f accepts, for messages.
func (f *Field) intRange() string {
	if f.Max == math.MaxInt32 {
		return fmt.Sprintf(">= %d", f.Min)
	}
	return fmt.Sprintf("%d-%d", f.Min, f.Max)
}

func (f *Field) parseChoice(raw any) (any, error) {
	if b, ok := raw.(bool); ok && f.BoolOnOff {
		if b {
			return "on", nil
		}
		return "off", nil
	}
	if s, ok := raw.(string); ok {
		s = strings.ToLower(strings.TrimSpace(s))
		for _, c := range f.Choices {
			if s == c {
				return c, nil
			}
		}
		if b, err := strconv.ParseBool(s); err == nil && f.BoolOnOff {
			return f.parseChoice(b)
		}
	}
	return nil, fmt.Errorf("want one of %s, got %s", strings.Join(f.Choices, ", "), describe(raw))
}

// parseFloat reads a number >= 0: a TOML integer or float, or a string (the environment).
func parseFloat(raw any) (any, error) {
	var n float64
	var err error
	switch v := raw.(type) {
	case float64:
		n = v
	case int:
		n = float64(v)
	case int64:
		n = float64(v)
	case string:
		n, err = strconv.ParseFloat(strings.TrimSpace(v), 64)
	default:
		err = errors.New("not a number")
	}
	if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return nil, fmt.Errorf("want a number >= 0 such as 10 or 2.5, got %s", describe(raw))
	}
	return n, nil
}

// ParseSize reads a byte size: "8GiB", "512MB", "1.5G", or a plain number of bytes.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}}
	mult := 1.0
	num := s
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			mult, num = u.mult, strings.TrimSpace(s[:len(s)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a size such as \"8GiB\" or \"512MB\" (0 = automatic), got %q", s)
	}
	return int64(n * mult), nil
}

// parseList takes a TOML array of strings, or a comma-separated string (the environment).
func parseList(raw any) (any, error) {
	switch v := raw.(type) {
	case []string:
		return v, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("want a list of strings, got an item %s", describe(item))
			}
			out = append(out, s)
		}
		return out, nil
	case string:
		out := []string{}
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list of strings, got %s", describe(raw))
}

func parseDuration(raw any) (any, error) {
	switch v := raw.(type) {
	case time.Duration:
		if v >= 0 {
			return v, nil
		}
	case string:
		if d, err := time.ParseDuration(strings.TrimSpace(v)); err == nil && d >= 0 {
			return d, nil
		}
	}
	return nil, fmt.Errorf("want a duration such as \"30s\" or \"1m30s\", got %s", describe(raw))
}

// parsePath expands a leading "~" and makes the path absolute against baseDir.
func parsePath(s, baseDir string) (any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("want a path, got \"\"")
	}
	p, err := ExpandHome(s)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(baseDir, p)
	}
	return filepath.Clean(p), nil
}

// ExpandHome replaces a leading "~" or "~/" with the user's home directory.
func ExpandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") && !strings.HasPrefix(p, `~`+string(filepath.Separator)) {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot expand %q: %w", p, err)
	}
	return filepath.Join(home, p[1:]), nil
}

// parseHost accepts a host name or IP address; brackets around an IPv6 address are dropped,
// since HTTPAddr adds them back.
func parseHost(s string) (any, error) {
	h := strings.TrimSpace(s)
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if strings.ContainsAny(h, " \t/[]") || (strings.Contains(h, ":") && !validIP(h)) {
		return nil, fmt.Errorf("want a host name or IP address without a port, got %q", s)
	}
	return h, nil
}

func validIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// describe shows a raw value in a message.
func describe(raw any) string {
	switch v := raw.(type) {
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "a table"
	case []any:
		return "an array"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%v", v)
	}
}
