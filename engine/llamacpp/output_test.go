package llamacpp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestOutputFilter(t *testing.T) {
	tests := []struct {
		name    string
		stops   []string
		pieces  []string
		want    string
		stopped bool
	}{
		{"plain", nil, []string{"Hel", "lo ", "world"}, "Hello world", false},
		{"stop inside piece", []string{"STOP"}, []string{"abc", "deSTOPxyz"}, "abcde", true},
		{"stop across pieces", []string{"STOP"}, []string{"abcS", "T", "OP", "zzz"}, "abc", true},
		{"false stop prefix released", []string{"STOP"}, []string{"abcST", "x"}, "abcSTx", false},
		{"earliest of two stops", []string{"xyz", "bc"}, []string{"abcxyz"}, "a", true},
		{"multibyte split", nil, []string{"caf", "\xc3", "\xa9!"}, "café!", false},
		{"emoji split in 4", nil, []string{"\xf0", "\x9f", "\x98", "\x80"}, "😀", false},
		{"invalid bytes replaced", nil, []string{"a\xff", "b"}, "a\uFFFDb", false},
		{"stop after multibyte", []string{"é"}, []string{"ca", "f\xc3", "\xa9 au lait"}, "caf", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &outputFilter{stops: tt.stops}
			var got strings.Builder
			stopped := false
			for _, p := range tt.pieces {
				text, s := f.push([]byte(p))
				if !utf8.ValidString(text) {
					t.Fatalf("push(%q) emitted invalid UTF-8 %q", p, text)
				}
				got.WriteString(text)
				if s {
					stopped = true
					break
				}
			}
			if !stopped {
				got.WriteString(f.flush())
			}
			if got.String() != tt.want || stopped != tt.stopped {
				t.Fatalf("got %q stopped=%v, want %q stopped=%v", got.String(), stopped, tt.want, tt.stopped)
			}
		})
	}
}

func TestOutputFilterHoldsPartialCharacter(t *testing.T) {
	f := &outputFilter{}
	if text, _ := f.push([]byte("ab\xe2\x82")); text != "ab" {
		t.Fatalf("emitted %q before the character was complete", text)
	}
	if text, _ := f.push([]byte("\xac")); text != "€" {
		t.Fatalf("got %q, want €", text)
	}
}
