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

// An answer in markdown is said without its marks, its code blocks not at all, as the chat
// aloud cuts it (streamed in pieces, sentence by sentence).
func TestMarkdownWordsAreSaid(t *testing.T) {
	answer := "## Steps\nRun **this** once, then *that* with `make`.\n\n```sh\nmake all. Then rm -rf /\n```\n" +
		"1. First [the docs](https://example.com/docs) now.\n- Keep 2 * 3 * 4 and snake_case_name.\n> Quoted __strong__ _word_ here."
	var s sentenceSplitter
	var m markdownWords
	var said []string
	say := func(sentence string) {
		if w := m.say(sentence); w != "" {
			said = append(said, w)
		}
	}
	for i := 0; i < len(answer); i += 5 {
		for _, sentence := range s.Add(answer[i:min(i+5, len(answer))]) {
			say(sentence)
		}
	}
	say(s.Flush())
	want := []string{"Steps", "Run this once, then that with make.", "First the docs now.", "Keep 2 * 3 * 4 and snake_case_name.", "Quoted strong word here."}
	if !slices.Equal(said, want) {
		t.Errorf("said %q\nwant %q", said, want)
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
