package chattemplate

import (
	"encoding/json"
	"testing"
)

// TestToJSON compares tojson with what Python's json.dumps writes for the
// same value and arguments (transformers' tojson is json.dumps with
// ensure_ascii=False by default).
func TestToJSON(t *testing.T) {
	nested := json.RawMessage(`{"b": 1, "a": [1, 2.5, {"z": null, "y": true}], "c": {}, "d": []}`)
	text := json.RawMessage(`"Zürich \"quoted\" \\ <b>&</b>\n\t\u0001\u007f 😀"`)
	tests := []struct {
		name   string
		filter string
		value  json.RawMessage
		want   string
	}{
		{"nested, one line", "tojson", nested,
			`{"b": 1, "a": [1, 2.5, {"z": null, "y": true}], "c": {}, "d": []}`},
		{"nested, indent=2", "tojson(indent=2)", nested,
			"{\n" +
				"  \"b\": 1,\n" +
				"  \"a\": [\n" +
				"    1,\n" +
				"    2.5,\n" +
				"    {\n" +
				"      \"z\": null,\n" +
				"      \"y\": true\n" +
				"    }\n" +
				"  ],\n" +
				"  \"c\": {},\n" +
				"  \"d\": []\n" +
				"}"},
		{"indent as a string", `tojson(indent="\t")`, json.RawMessage(`{"k": [1]}`),
			"{\n\t\"k\": [\n\t\t1\n\t]\n}"},
		{"indent=0 breaks lines only", "tojson(indent=0)", json.RawMessage(`[1, {"k": 2}]`),
			"[\n1,\n{\n\"k\": 2\n}\n]"},
		{"sort_keys", "tojson(sort_keys=true)", nested,
			`{"a": [1, 2.5, {"y": true, "z": null}], "b": 1, "c": {}, "d": []}`},
		{"separators", "tojson(separators=(',', ':'))", nested,
			`{"b":1,"a":[1,2.5,{"z":null,"y":true}],"c":{},"d":[]}`},
		{"strings keep non-ASCII and HTML", "tojson", text,
			`"Zürich \"quoted\" \\ <b>&</b>\n\t\u0001` + "\x7f" + ` 😀"`},
		{"ensure_ascii escapes beyond ASCII", "tojson(ensure_ascii=true)", text,
			`"Z\u00fcrich \"quoted\" \\ <b>&</b>\n\t\u0001\u007f \ud83d\ude00"`},
		{"floats as Python's repr", "tojson", json.RawMessage(`[1.0, 0.1, 1e-05, 0.0001, 1e16, 1e15, 123456789012345.6, -0.0, 3, 1.5e300]`),
			`[1.0, 0.1, 1e-05, 0.0001, 1e+16, 1000000000000000.0, 123456789012345.6, -0.0, 3, 1.5e+300]`},
		{"scalars", "tojson", json.RawMessage(`[null, true, false, "", 0, -7]`),
			`[null, true, false, "", 0, -7]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse("{{ value | " + tc.filter + " }}")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := tmpl.Render(nil, Options{Vars: map[string]any{"value": tc.value}})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestToJSONTemplateValues covers values built inside the template, whose
// dicts gonja orders as written.
func TestToJSONTemplateValues(t *testing.T) {
	tests := []struct{ source, want string }{
		{`{{ {'b': 1, 'a': {'y': [1, 'two', none]}} | tojson }}`, `{"b": 1, "a": {"y": [1, "two", null]}}`},
		{`{{ {1: 'int key', 'k': 2.0} | tojson }}`, `{"1": "int key", "k": 2.0}`},
		{`{{ messages[0] | tojson }}`, `{"role": "user", "content": "hi"}`},
		{`{{ (1, 2) | tojson }}`, `[1, 2]`},
		{`{{ 'x' | tojson(4) }}`, `"x"`},
	}
	for _, tc := range tests {
		tmpl, err := Parse(tc.source)
		if err != nil {
			t.Fatalf("Parse(%s): %v", tc.source, err)
		}
		got, err := tmpl.Render([]Message{{Role: "user", Content: "hi"}}, Options{})
		if err != nil {
			t.Fatalf("Render(%s): %v", tc.source, err)
		}
		if got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.source, got, tc.want)
		}
	}
}

func TestPyFloat(t *testing.T) {
	tests := map[float64]string{
		0:                   "0.0",
		1:                   "1.0",
		-2.5:                "-2.5",
		1e-4:                "0.0001",
		1.5e-5:              "1.5e-05",
		1e16:                "1e+16",
		9.99e15:             "9990000000000000.0",
		1e100:               "1e+100",
		0.30000000000000004: "0.30000000000000004",
	}
	for in, want := range tests {
		if got := pyFloat(in); got != want {
			t.Errorf("pyFloat(%v) = %q, want %q", in, got, want)
		}
	}
}
