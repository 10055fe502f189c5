package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"
	"unicode"
)

// Hidden stands in for each secret in Public's view.
const Hidden = "[hidden]"

// Public is the configuration in effect as JSON for operators (GET /api/config): every table,
// with each field's name in snake_case and durations as "1m30s"; secrets are hidden (each
// server.api_keys entry is Hidden). The data dir's swarm key and identity are not configuration
// and never appear.
func (c *Config) Public() ([]byte, error) {
	redacted := *c
	redacted.Server.APIKeys = make([]string, len(c.Server.APIKeys))
	for i := range redacted.Server.APIKeys {
		redacted.Server.APIKeys[i] = Hidden
	}
	v := publicValue(reflect.ValueOf(redacted)).(map[string]any)
	// The [models] table's own keys are Lifecycle; the declared models are its subtables.
	v["models"], v["declared_models"] = v["lifecycle"], v["models"]
	delete(v, "lifecycle")
	return json.MarshalIndent(v, "", "  ")
}

var durationType = reflect.TypeFor[time.Duration]()

// publicValue turns v into what encoding/json renders with snake_case keys.
func publicValue(v reflect.Value) any {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Struct:
		m := map[string]any{}
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				m[snakeCase(f.Name)] = publicValue(v.Field(i))
			}
		}
		return m
	case reflect.Slice:
		s := make([]any, v.Len())
		for i := range s {
			s[i] = publicValue(v.Index(i))
		}
		return s
	default:
		return v.Interface()
	}
}

// snakeCase turns a Go field name into the config's key style: HTTPPort is http_port, APIKeys
// api_keys, ReadHeaderTimeout read_header_timeout.
func snakeCase(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		// A word starts at an upper-case letter after a lower-case one, or before one (the P of
		// HTTPPort), but an acronym's plural s stays with it (URLs).
		plural := i+1 < len(r) && r[i+1] == 's' && (i+2 == len(r) || unicode.IsUpper(r[i+2]))
		if i > 0 && unicode.IsUpper(c) && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1]) && !plural) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
