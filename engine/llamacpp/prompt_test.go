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
