package llamacpp

import (
	"strings"
	"unicode/utf8"
)

// outputFilter turns the bytes of sampled tokens into text safe to send: it holds back an
// unfinished UTF-8 character and any tail that could be the start of a stop string, and cuts the
// output at the first stop string. Bytes that can never form valid UTF-8 become U+FFFD.
type outputFilter struct {
	stops   []string
	pending []byte
}

// push adds a token's bytes and returns the text now safe to emit; stopped reports that a stop
// string matched (the returned text ends before it, and later pushes must not happen).
func (f *outputFilter) push(piece []byte) (text string, stopped bool) {
	f.pending = append(f.pending, piece...)
	if i := f.firstStop(); i >= 0 {
		text = strings.ToValidUTF8(string(f.pending[:i]), "\uFFFD")
		f.pending = f.pending[:0]
		return text, true
	}
	safe := len(f.pending) - f.stopPrefixLen()
	safe = incompleteRuneStart(f.pending, safe)
	text = strings.ToValidUTF8(string(f.pending[:safe]), "\uFFFD")
	f.pending = append(f.pending[:0], f.pending[safe:]...)
	return text, false
}

// flush returns whatever is held back, at the end of generation.
func (f *outputFilter) flush() string {
	text := strings.ToValidUTF8(string(f.pending), "\uFFFD")
	f.pending = f.pending[:0]
	return text
}

// firstStop is the byte index of the earliest stop string in pending, or -1.
func (f *outputFilter) firstStop() int {
	first := -1
	for _, stop := range f.stops {
		if i := strings.Index(string(f.pending), stop); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

// stopPrefixLen is the length of the longest suffix of pending that begins some stop string.
func (f *outputFilter) stopPrefixLen() int {
	longest := 0
	for _, stop := range f.stops {
		for n := min(len(stop)-1, len(f.pending)); n > longest; n-- {
			if strings.HasPrefix(stop, string(f.pending[len(f.pending)-n:])) {
				longest = n
				break
			}
		}
	}
	return longest
}

// incompleteRuneStart moves end back to the start of a UTF-8 character that b[:end] cuts short,
// so the character is held until its last byte arrives.
func incompleteRuneStart(b []byte, end int) int {
	for i := end - 1; i >= 0 && i >= end-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:end]) {
				return i
			}
			return end
		}
	}
	return end
}
