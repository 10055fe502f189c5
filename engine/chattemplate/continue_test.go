package chattemplate

import (
	"errors"
	"strings"
	"testing"
)

// TestContinueFinalMessage checks that a conversation whose final assistant turn is left open
// renders as the generation prompt followed by that turn's text, byte for byte: the prompt a
// model sees when it resumes a reply must equal the one it had when it wrote the first part
// plus the text so far, for the templates whose generation prompt opens an assistant turn.
func TestContinueFinalMessage(t *testing.T) {
	question := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Tell me a story."}}
	// trims: the template trims a turn's text, so a continued turn keeps its leading white
	// space only when it is all white space.
	for fixture, trims := range map[string]bool{"qwen2.5-7b-instruct": false, "llama-3.3-70b-instruct": true, "gemma-2-2b-it": true, "granite-3.3-2b-instruct": false} {
		tmpl := loadTemplate(t, fixture)
		question := question
		if fixture == "gemma-2-2b-it" {
			question = question[1:] // gemma-2 has no system role
		}
		open, err := tmpl.Render(question, Options{AddGenerationPrompt: true, BOSToken: "<s>"})
		if err != nil {
			t.Fatalf("%s: %v", fixture, err)
		}
		for _, partial := range []string{"Once upon a time", "Once upon a ", " Once\n\n", " "} {
			msgs := append(append([]Message(nil), question...), Message{Role: "assistant", Content: partial})
			got, err := tmpl.Render(msgs, Options{ContinueFinalMessage: true, BOSToken: "<s>"})
			if err != nil {
				t.Fatalf("%s, %q: %v", fixture, partial, err)
			}
			want := open + partial
			if trims && strings.TrimSpace(partial) != "" {
				want = open + strings.TrimLeft(partial, " \n")
			}
			if got != want {
				t.Errorf("%s, %q:\n got %q\nwant %q", fixture, partial, got, want)
			}
		}
	}
}

func TestContinueFinalMessageErrors(t *testing.T) {
	tmpl := loadTemplate(t, "qwen2.5-7b-instruct")
	user := []Message{{Role: "user", Content: "Hi"}}
	if _, err := tmpl.Render(user, Options{ContinueFinalMessage: true}); !errors.Is(err, ErrNotContinuable) {
		t.Errorf("final user turn: %v, want ErrNotContinuable", err)
	}
	reply := append(user, Message{Role: "assistant", Content: "Hel"})
	if _, err := tmpl.Render(reply, Options{ContinueFinalMessage: true, AddGenerationPrompt: true}); !errors.Is(err, ErrNotContinuable) {
		t.Errorf("with a generation prompt: %v, want ErrNotContinuable", err)
	}
	// A template that rewrites the assistant's text cannot be continued.
	upper, err := Parse("{% for m in messages %}{{ m.content | upper }}{% endfor %}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := upper.Render(reply, Options{ContinueFinalMessage: true}); !errors.Is(err, ErrNotContinuable) {
		t.Errorf("rewritten text: %v, want ErrNotContinuable", err)
	}
}
