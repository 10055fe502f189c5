package llamacpp

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// loadWithTemplate loads a generated model whose GGUF carries template ("" = none at all is not
// expressible through tinygguf, so "none" stores a template llama.cpp and gonja both reject).
func loadWithTemplate(t *testing.T, template string) *model {
	t.Helper()
	return loadWithTemplateContext(t, template, 256)
}

// loadWithTemplateContext is loadWithTemplate with a context window of contextLength tokens.
func loadWithTemplateContext(t *testing.T, template string, contextLength int) *model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := tinygguf.Write(path, tinygguf.Options{ChatTemplate: template}); err != nil {
		t.Fatal(err)
	}
	llm, err := New().LoadLLM(t.Context(), engine.LoadOptions{Path: path, Threads: 1, ContextLength: contextLength})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { llm.Close() })
	return llm.(*model)
}

func TestRenderPrompt(t *testing.T) {
	gemma3, err := os.ReadFile("../chattemplate/testdata/gemma-3-it.jinja")
	if err != nil {
		t.Fatal(err)
	}
	msgs := []engine.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}
	tests := []struct {
		name, template, want string
	}{
		{"gguf template through jinja", "", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
		// gonja cannot parse Gemma 3's template: llama.cpp's built-in gemma format renders it.
		{"builtin fallback", string(gemma3), "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"},
		{"unknown template gets chatml", "{{ not a template we know", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := loadWithTemplate(t, tt.template)
			got, err := m.renderPrompt(engine.GenerateRequest{Messages: msgs})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
			// The same conversation with the reply begun and left open: the generation prompt
			// and the reply's text, through either renderer.
			begun := append(append([]engine.Message(nil), msgs...), engine.Message{Role: "assistant", Content: "Once upon a "})
			got, err = m.renderPrompt(engine.GenerateRequest{Messages: begun, ContinueFinal: true})
			if err != nil || got != tt.want+"Once upon a " {
				t.Fatalf("continued: %v\ngot  %q\nwant %q", err, got, tt.want+"Once upon a ")
			}
			if _, err := m.renderPrompt(engine.GenerateRequest{Messages: msgs, ContinueFinal: true}); !errors.Is(err, engine.ErrInvalidRequest) {
				t.Fatalf("continuing a user turn: %v, want ErrInvalidRequest", err)
			}
		})
	}
}

func TestTemplateRejectsConversation(t *testing.T) {
	m := loadWithTemplate(t, `{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}`)
	_, err := m.renderPrompt(engine.GenerateRequest{Messages: []engine.Message{{Role: "system", Content: "x"}, {Role: "user", Content: "y"}}})
	if !errors.Is(err, engine.ErrInvalidRequest) || !strings.Contains(err.Error(), "System role not supported") {
		t.Fatalf("err = %v", err)
	}
}

// TestGenerateCountsTokens checks OnCount: told before each emit, it ends at the result's count
// of generated tokens, and never goes back.
func TestGenerateCountsTokens(t *testing.T) {
	m := loadWithTemplate(t, "")
	counts, emits := []int{}, 0
	req := engine.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 12, IgnoreEOS: true,
		OnCount: func(n int) { counts = append(counts, n) }}
	res, err := m.Generate(t.Context(), req, func(string) error { emits++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != emits || emits == 0 || counts[len(counts)-1] != res.CompletionTokens || res.CompletionTokens != 12 {
		t.Fatalf("counts %v over %d emits, result %d tokens", counts, emits, res.CompletionTokens)
	}
	for i := 1; i < len(counts); i++ {
		if counts[i] < counts[i-1] {
			t.Fatalf("counts went back: %v", counts)
		}
	}
}
