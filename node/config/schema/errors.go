package schema

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every error the package reports about the configuration itself.
var ErrInvalid = errors.New("invalid configuration")

// invalidError is a configuration problem: its message is written for the user, and it
// matches ErrInvalid and, when set, the error that caused it.
type invalidError struct {
	msg   string
	cause error
}

func (e *invalidError) Error() string { return e.msg }

func (e *invalidError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.cause}
}

// Invalidf makes an error about the configuration, written for the user, that wraps ErrInvalid.
func Invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

var bareKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// KeyString writes a key path the way TOML would: server.http_port, models."qwen2.5".path.
func KeyString(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		if bareKeyRE.MatchString(p) {
			parts[i] = p
		} else {
			parts[i] = strconv.Quote(p)
		}
	}
	return strings.Join(parts, ".")
}

// suggest returns the candidate closest to word when it is close enough to be a likely typo,
// else "".
func suggest(word string, candidates []string) string {
	best, bestDist := "", max(2, len(word)/5)+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
