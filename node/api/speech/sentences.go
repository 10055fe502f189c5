package speech

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text reaches text-to-speech sentence by sentence, so the first audio comes after the first
// sentence is spoken rather than the whole text: the HTTP speech route and the voice pipeline
// both split here.

// sentenceSplitter cuts text that arrives in pieces (an LLM's deltas) into sentences: a
// sentence ends at . ! ? … (and their CJK forms) followed by a space, or at a line break.
// "Mr. Smith", "e.g. this" and "3.14" do not end one. The zero value is ready to use.
type sentenceSplitter struct {
	pending strings.Builder
}

// Add takes the next piece of text and returns the sentences it completed.
func (s *sentenceSplitter) Add(text string) []string {
	s.pending.WriteString(text)
	buf := s.pending.String()
	var out []string
	start := 0
	for i, r := range buf {
		if !sentenceEnd(buf, start, i, r) {
			continue
		}
		end := i + utf8.RuneLen(r)
		if sentence := strings.TrimSpace(buf[start:end]); sentence != "" {
			out = append(out, sentence)
		}
		start = end
	}
	s.pending.Reset()
	s.pending.WriteString(buf[start:])
	return out
}

// Flush returns what is left as the last sentence ("" when nothing is).
func (s *sentenceSplitter) Flush() string {
	rest := strings.TrimSpace(s.pending.String())
	s.pending.Reset()
	return rest
}

// splitSentences cuts a whole text into sentences.
func splitSentences(text string) []string {
	var s sentenceSplitter
	out := s.Add(text)
	if rest := s.Flush(); rest != "" {
		out = append(out, rest)
	}
	return out
}

// sentenceEnd says whether the rune r at byte i of buf ends the sentence that starts at start.
// A full stop needs the next rune to be known (a space), so it waits for more text.
func sentenceEnd(buf string, start, i int, r rune) bool {
	switch r {
	case '\n':
		return true
	case '。', '！', '？':
		return true
	case '.', '!', '?', '…':
		next, size := utf8.DecodeRuneInString(buf[i+utf8.RuneLen(r):])
		if size == 0 || !unicode.IsSpace(next) {
			return false
		}
		return r != '.' || !abbreviation(buf[start:i])
	}
	return false
}

// abbreviation says whether the word before a full stop is one that does not end a sentence:
// a title, a single letter (an initial), dotted short forms (e.g., p.m.).
func abbreviation(before string) bool {
	fields := strings.Fields(before)
	if len(fields) == 0 {
		return true
	}
	word := strings.ToLower(strings.TrimLeft(fields[len(fields)-1], "(\"'"))
	if utf8.RuneCountInString(word) == 1 && unicode.IsLetter([]rune(word)[0]) {
		return true
	}
	if strings.Contains(strings.TrimRight(word, "."), ".") { // e.g. i.e. p.m. U.S., not an ellipsis
		return true
	}
	switch word {
	case "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "fig", "sra", "srta", "dra":
		return true
	}
	return false
}

// markdownWords turns the sentences of an LLM's answer, as the splitter cuts them, into what is
// said aloud: markdown's marks left out (emphasis, code ticks, heading hashes, list bullets and
// numbers, quote marks, a link's URL: its label is said) and code blocks not said at all. A
// speech model would read "**" as "asterisk asterisk". The zero value is ready; it remembers
// whether a code block is open, as the splitter ends a sentence at every line break.
type markdownWords struct{ inCode bool }

var (
	mdFence    = regexp.MustCompile("^ {0,3}(```|~~~)")
	mdLead     = regexp.MustCompile(`^(#{1,6}\s+|[-*+]\s+|\d{1,9}[.)](\s+|$)|>\s?)`)
	mdLink     = regexp.MustCompile(`\[([^\]\n]+)\]\([^)\s]+\)`)
	mdStrong   = regexp.MustCompile("\\*\\*|__|`")
	mdEmphasis = regexp.MustCompile(`(^|[^\w*])[*_]([^*_\s](?:[^*_]*[^*_\s])?)[*_]($|[^\w*])`)
)

// say is sentence as said aloud, "" when nothing of it is.
func (m *markdownWords) say(sentence string) string {
	if mdFence.MatchString(sentence) {
		m.inCode = !m.inCode
		return ""
	}
	if m.inCode {
		return ""
	}
	t := mdLead.ReplaceAllString(strings.TrimSpace(sentence), "")
	t = mdLink.ReplaceAllString(t, "$1")
	t = mdStrong.ReplaceAllString(t, "")
	t = mdEmphasis.ReplaceAllString(t, "$1$2$3")
	return strings.TrimSpace(t)
}
