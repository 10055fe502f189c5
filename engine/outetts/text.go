package outetts

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// outettsVersion is the OuteTTS prompt format: 0.2 separates words with <|text_sep|> and wraps
// each word's codes in <|code_start|>…<|code_end|>; 0.3 uses <|space|> for both.
type outettsVersion int

const (
	outetts02 outettsVersion = iota
	outetts03
)

// separator is the token text between words.
func (v outettsVersion) separator() string {
	if v == outetts03 {
		return "<|space|>"
	}
	return "<|text_sep|>"
}

// speaker is an OuteTTS speaker profile: words the reference voice said, each with its length
// and audio codes. The prompt shows the model the voice through them. The JSON is the format of
// OuteTTS's speaker files (and llama.cpp's tts --tts-speaker-file).
type speaker struct {
	Version string        `json:"version"`
	Words   []speakerWord `json:"words"`
}

type speakerWord struct {
	Word     string  `json:"word"`
	Duration float64 `json:"duration"`
	Codes    []int   `json:"codes"`
}

// loadSpeaker reads a speaker profile file.
func loadSpeaker(path string) (*speaker, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s speaker
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("speaker profile %s: %w", path, err)
	}
	if len(s.Words) == 0 {
		return nil, fmt.Errorf("speaker profile %s has no words", path)
	}
	return &s, nil
}

// outettsPrompt is the text the model continues with audio codes: the text to speak (after the
// speaker's words, when there is a speaker) between <|text_start|> and <|text_end|>, then
// <|audio_start|> and the speaker's words with their codes. Without a speaker the model picks a
// voice of its own (OuteTTS's speaker-less prompt).
func outettsPrompt(v outettsVersion, words string, sp *speaker) string {
	sep := v.separator()
	var b strings.Builder
	b.WriteString("<|im_start|>\n<|text_start|>")
	if sp != nil {
		for _, w := range sp.Words {
			b.WriteString(w.Word + sep)
		}
	}
	b.WriteString(words)
	b.WriteString("<|text_end|>\n<|audio_start|>\n")
	if sp == nil {
		return b.String()
	}
	codeStart, codeEnd := "<|code_start|>", "<|code_end|>"
	if v == outetts03 {
		codeStart, codeEnd = "", sep
	}
	for i, w := range sp.Words {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s<|t_%.2f|>%s", w.Word, w.Duration, codeStart)
		for _, c := range w.Codes {
			fmt.Fprintf(&b, "<|%d|>", c)
		}
		b.WriteString(codeEnd)
	}
	return b.String()
}

var (
	numberPattern  = regexp.MustCompile(`\d+(\.\d+)?`)
	separatorChars = regexp.MustCompile(`[-_/,.\\]`)
	nonLetters     = regexp.MustCompile(`[^a-z\s]`)
	spaces         = regexp.MustCompile(`\s+`)
)

// normalizeText prepares English text as OuteTTS was trained on it: numbers spelled out,
// lowercase, punctuation that separates words turned into spaces, anything else but letters
// dropped, and the words joined by the version's separator token. Other scripts are dropped
// too: OuteTTS romanises them first, which this engine does not.
func normalizeText(text string, v outettsVersion) string {
	text = numberPattern.ReplaceAllStringFunc(text, numberWords)
	text = strings.ToLower(text)
	text = separatorChars.ReplaceAllString(text, " ")
	text = nonLetters.ReplaceAllString(text, "")
	return strings.Join(strings.Fields(spaces.ReplaceAllString(text, " ")), v.separator())
}

var smallNumbers = []string{
	"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
	"eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
	"nineteen",
}

var tensWords = []string{"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"}

// numberWords spells a number such as "42" or "3.14" in English words ("forty-two", "three
// point one four"). Integers too long to say as a quantity are read digit by digit.
func numberWords(s string) string {
	whole, frac, hasFrac := strings.Cut(s, ".")
	var parts []string
	n, err := strconv.ParseUint(whole, 10, 64)
	switch {
	case err != nil || n >= 1e15:
		for _, d := range whole {
			parts = append(parts, smallNumbers[d-'0'])
		}
	default:
		parts = append(parts, integerWords(n))
	}
	if hasFrac {
		parts = append(parts, "point")
		for _, d := range frac {
			parts = append(parts, smallNumbers[d-'0'])
		}
	}
	return " " + strings.Join(parts, " ") + " "
}

// integerWords spells n < 10^15.
func integerWords(n uint64) string {
	if n == 0 {
		return "zero"
	}
	scales := []struct {
		value uint64
		name  string
	}{{1e12, "trillion"}, {1e9, "billion"}, {1e6, "million"}, {1e3, "thousand"}}
	var parts []string
	for _, sc := range scales {
		if n >= sc.value {
			parts = append(parts, underThousand(n/sc.value), sc.name)
			n %= sc.value
		}
	}
	if n > 0 {
		parts = append(parts, underThousand(n))
	}
	return strings.Join(parts, " ")
}

// underThousand spells 0 < n < 1000.
func underThousand(n uint64) string {
	var parts []string
	if n >= 100 {
		parts = append(parts, smallNumbers[n/100], "hundred")
		n %= 100
	}
	switch {
	case n >= 20 && n%10 != 0:
		parts = append(parts, tensWords[n/10]+"-"+smallNumbers[n%10])
	case n >= 20:
		parts = append(parts, tensWords[n/10])
	case n > 0:
		parts = append(parts, smallNumbers[n])
	}
	return strings.Join(parts, " ")
}
