package speech

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"
)

func TestSplitSentences(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"Hello there. How are you?", []string{"Hello there.", "How are you?"}},
		{"Wait! Really? Yes.", []string{"Wait!", "Really?", "Yes."}},
		{"Dr. Smith met Mr. Jones at 3.30 p.m. on Friday.", []string{"Dr. Smith met Mr. Jones at 3.30 p.m. on Friday."}},
		{"J. R. R. Tolkien wrote it. Then he rested.", []string{"J. R. R. Tolkien wrote it.", "Then he rested."}},
		{"A list:\nfirst line\nsecond line", []string{"A list:", "first line", "second line"}},
		{"No end mark", []string{"No end mark"}},
		{"Ends with dots... and goes on.", []string{"Ends with dots...", "and goes on."}},
		{"你好。世界！", []string{"你好。", "世界！"}},
		{"   ", nil},
	}
	for _, tt := range tests {
		if got := splitSentences(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("splitSentences(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

// Text that arrives in pieces splits as the whole text does: a full stop waits for the next
// piece to know whether a space follows.
func TestSentenceSplitterStreams(t *testing.T) {
	text := "The first one. A second, longer one! Is 3.14 a number? Dr. Who knows."
	var s sentenceSplitter
	var got []string
	for i := 0; i < len(text); i += 3 {
		got = append(got, s.Add(text[i:min(i+3, len(text))])...)
	}
	if rest := s.Flush(); rest != "" {
		got = append(got, rest)
	}
	if want := splitSentences(text); !slices.Equal(got, want) {
		t.Errorf("streamed %q, whole %q", got, want)
	}
}

func TestAudioBufferReplaysAndWaits(t *testing.T) {
	b := NewAudioBuffer()
	b.Add([]byte("ab"))
	first := b.Reader()
	piece, err := first.Next(t.Context())
	if err != nil || string(piece) != "ab" {
		t.Fatalf("first piece %q %v", piece, err)
	}
	// The next piece is waited for, then the end.
	go func() {
		time.Sleep(10 * time.Millisecond)
		b.Add([]byte("cd"))
		b.End(io.EOF)
	}()
	if piece, err := first.Next(t.Context()); err != nil || string(piece) != "cd" {
		t.Fatalf("waited piece %q %v", piece, err)
	}
	if _, err := first.Next(t.Context()); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
	// A second reader (a second node, after the first failed) reads it all again.
	again := b.Reader()
	var all []byte
	for {
		piece, err := again.Next(t.Context())
		if errors.Is(err, io.EOF) {
			break
		}
		all = append(all, piece...)
	}
	if string(all) != "abcd" {
		t.Errorf("replay %q", all)
	}
	// A reader whose context ends stops waiting.
	open := NewAudioBuffer()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := open.Reader().Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled wait: %v", err)
	}
}
