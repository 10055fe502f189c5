package outetts

import (
	"strings"
	"testing"
)

func TestNormalizeText(t *testing.T) {
	// want separates words with spaces; the separator token replaces them.
	tests := []struct {
		in   string
		v    outettsVersion
		want string
	}{
		{"Hello, World!", outetts02, "hello world"},
		{"It costs $3.50 today.", outetts03, "it costs three point five zero today"},
		{"In 1984 there were 21 well-known cats", outetts02, "in one thousand nine hundred eighty four there were twenty one well known cats"},
		{"  Ça va? 100%  ", outetts02, "a va one hundred"},
		{"", outetts02, ""},
		{"12345678901234567890", outetts02, "one two three four five six seven eight nine zero one two three four five six seven eight nine zero"},
	}
	for _, tt := range tests {
		want := strings.ReplaceAll(tt.want, " ", tt.v.separator())
		if got := normalizeText(tt.in, tt.v); got != want {
			t.Errorf("normalizeText(%q) = %q, want %q", tt.in, got, want)
		}
	}
}

func TestOuteTTSPrompt(t *testing.T) {
	sp := &speaker{Words: []speakerWord{{Word: "the", Duration: 0.08, Codes: []int{1, 2}}, {Word: "end", Duration: 0.5, Codes: []int{3}}}}
	tests := []struct {
		v    outettsVersion
		sp   *speaker
		want string
	}{
		{outetts02, nil, "<|im_start|>\n<|text_start|>hi<|text_end|>\n<|audio_start|>\n"},
		{outetts02, sp, "<|im_start|>\n<|text_start|>the<|text_sep|>end<|text_sep|>hi<|text_end|>\n<|audio_start|>\n" +
			"the<|t_0.08|><|code_start|><|1|><|2|><|code_end|>\nend<|t_0.50|><|code_start|><|3|><|code_end|>"},
		{outetts03, sp, "<|im_start|>\n<|text_start|>the<|space|>end<|space|>hi<|text_end|>\n<|audio_start|>\n" +
			"the<|t_0.08|><|1|><|2|><|space|>\nend<|t_0.50|><|3|><|space|>"},
	}
	for _, tt := range tests {
		if got := outettsPrompt(tt.v, "hi", tt.sp); got != tt.want {
			t.Errorf("prompt:\n got %q\nwant %q", got, tt.want)
		}
	}
}
