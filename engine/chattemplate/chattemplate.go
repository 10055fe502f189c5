// Package chattemplate renders a model's Jinja chat template (the GGUF key
// tokenizer.chat_template) into a prompt, the way Hugging Face transformers'
// apply_chat_template does.
//
// Templates run on gonja (a Go Jinja engine) set up as transformers sets up
// jinja2: trim_blocks and lstrip_blocks on, raise_exception and strftime_now
// as globals, a tojson that writes what Python's json.dumps writes, ordered
// dicts, and the {% generation %} block. A template that gonja cannot parse or
// run makes Parse or Render fail; callers then fall back to llama.cpp's
// built-in chat formats.
package chattemplate

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// ErrRejected is wrapped by Render's error when the template itself refused
// the conversation through raise_exception (for example "System role not
// supported"): the request is at fault, not the engine.
var ErrRejected = errors.New("chat template rejected the messages")

// Message is one chat turn as templates see it.
type Message struct {
	Role    string
	Content string
	// ToolCalls are the calls of an assistant turn; templates read them as
	// OpenAI sends them, message.tool_calls[i].function.arguments a mapping.
	ToolCalls []ToolCall
	// ToolCallID is the call a "tool" turn answers; Name the tool's name.
	ToolCallID string
	Name       string
}

// ToolCall is one call of an assistant turn.
type ToolCall struct {
	ID   string
	Name string
	// Arguments is JSON text of an object; text that is not JSON reaches the
	// template as a string.
	Arguments string
}

// Options are the variables templates read besides messages.
type Options struct {
	AddGenerationPrompt bool
	// ContinueFinalMessage leaves the last message, an assistant turn, open: the prompt ends
	// with its text, so the model continues it (transformers' continue_final_message). It
	// excludes AddGenerationPrompt.
	ContinueFinalMessage bool
	BOSToken, EOSToken   string
	// Vars are extra variables (e.g. "tools", "date_string",
	// "enable_thinking"); may be nil. Values may be nil, strings, bools,
	// numbers, slices, maps with string keys (their keys are sorted, as Go
	// maps have no order) or json.RawMessage (decoded keeping key order, the
	// way to pass tool schemas).
	Vars map[string]any
}

// Template is a parsed chat template; safe for concurrent Render calls.
type Template struct {
	compiled *exec.Template
}

// templateName identifies the single in-memory source a Template loads; it
// is never shown to users.
const templateName = "/chat_template.jinja"

// Parse compiles a chat template. It fails when gonja cannot parse source.
func Parse(source string) (tmpl *Template, err error) {
	defer recoverAsError(&err, "parse chat template")

	loader, err := loaders.NewMemoryLoader(map[string]string{templateName: source})
	if err != nil {
		return nil, fmt.Errorf("parse chat template: %w", err)
	}
	cfg := config.New()
	cfg.TrimBlocks = true
	cfg.LeftStripBlocks = true
	compiled, err := exec.NewTemplate(templateName, cfg, loader, environment())
	if err != nil {
		// exec.NewTemplate puts the whole source into its message; keep
		// only the parser's own error.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return nil, fmt.Errorf("parse chat template: %w", err)
	}
	return &Template{compiled: compiled}, nil
}

// reservedVars are set by Render itself and may not come through Vars.
var reservedVars = []string{"messages", "add_generation_prompt", "bos_token", "eos_token", "raise_exception"}

// Render fills the template with messages and opts and returns the prompt.
// An error wrapping ErrRejected means the template raised an exception.
func (t *Template) Render(messages []Message, opts Options) (prompt string, err error) {
	defer recoverAsError(&err, "render chat template")

	if opts.ContinueFinalMessage {
		if opts.AddGenerationPrompt {
			return "", fmt.Errorf("%w: continuing the final message excludes a generation prompt", ErrNotContinuable)
		}
		return OpenFinal(messages, func(msgs []Message, addGenerationPrompt bool) (string, error) {
			closed := opts
			closed.ContinueFinalMessage, closed.AddGenerationPrompt = false, addGenerationPrompt
			return t.Render(msgs, closed)
		})
	}

	data := make(map[string]any, len(opts.Vars)+len(reservedVars))
	for name, value := range opts.Vars {
		for _, reserved := range reservedVars {
			if name == reserved {
				return "", fmt.Errorf("render chat template: variable %q is set by Render, not Vars", name)
			}
		}
		converted, err := templateValue(value)
		if err != nil {
			return "", fmt.Errorf("render chat template: variable %q: %w", name, err)
		}
		data[name] = converted
	}

	turns := make(list, len(messages))
	for i, m := range messages {
		turns[i] = messageDict(m)
	}
	// Each render gets its own raise_exception so the message it records
	// cannot leak into a concurrent render.
	var raised *string
	data["messages"] = turns
	data["add_generation_prompt"] = opts.AddGenerationPrompt
	data["bos_token"] = opts.BOSToken
	data["eos_token"] = opts.EOSToken
	data["raise_exception"] = func(args *exec.VarArgs) (any, error) {
		message := args.First().String()
		if raised == nil {
			raised = &message
		}
		return nil, fmt.Errorf("%w: %s", ErrRejected, message)
	}

	out, execErr := t.compiled.ExecuteToString(exec.NewContext(data))
	// The template's own message wins over gonja's wrapping of it, and
	// counts even where an expression swallowed the error.
	if raised != nil {
		return "", fmt.Errorf("%w: %s", ErrRejected, *raised)
	}
	if execErr != nil {
		return "", fmt.Errorf("render chat template: %s", flattenError(execErr))
	}
	return out, nil
}

// ErrNotContinuable is wrapped by the error of a render that cannot leave the final message
// open: it is not an assistant turn, or the template does not show its text as is.
var ErrNotContinuable = errors.New("the final message cannot be continued")

// OpenFinal renders messages with the final one, an assistant turn, left open, through render
// (which renders a conversation closed, with or without the generation prompt): the
// conversation is rendered closed and cut right after the final message's text. Templates often
// trim a turn's text, so the text is found trimmed and its trailing white space put back: the
// model must see exactly the text it continues. A final message of white space only is the
// generation prompt followed by it.
func OpenFinal(messages []Message, render func(msgs []Message, addGenerationPrompt bool) (string, error)) (string, error) {
	if len(messages) == 0 || messages[len(messages)-1].Role != "assistant" {
		return "", fmt.Errorf("%w: to continue it, the last message must be an assistant turn", ErrNotContinuable)
	}
	content := messages[len(messages)-1].Content
	trimmed := strings.TrimSpace(content)
	if trimmed == "" {
		prompt, err := render(messages[:len(messages)-1], true)
		if err != nil {
			return "", err
		}
		return prompt + content, nil
	}
	rendered, err := render(messages, false)
	if err != nil {
		return "", err
	}
	i := strings.LastIndex(rendered, trimmed)
	if i < 0 {
		return "", fmt.Errorf("%w: the chat template does not show its text as is", ErrNotContinuable)
	}
	trailing := content[len(strings.TrimRightFunc(content, unicode.IsSpace)):]
	return rendered[:i+len(trimmed)] + trailing, nil
}

// flattenError shortens gonja's chain of wrapped messages, which repeats
// every enclosing statement and expression, to the innermost line number and
// the cause.
func flattenError(err error) string {
	parts := strings.Split(err.Error(), ": ")
	cause := strings.TrimSpace(parts[len(parts)-1])
	if cause == "" {
		return err.Error()
	}
	for i := len(parts) - 2; i >= 0; i-- {
		if _, line, ok := strings.Cut(parts[i], " at line "); ok {
			return "line " + line + ": " + cause
		}
	}
	return cause
}

// recoverAsError turns a panic inside gonja into an error: a template read
// from a model file must never take the node down.
func recoverAsError(err *error, doing string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: template engine panicked: %v", doing, r)
	}
}
