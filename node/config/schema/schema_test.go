package schema

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// testTree is a small schema of no program's: every hook the package offers, once.
func testTree() *Node {
	word := func(s string) (string, error) {
		if strings.ContainsRune(s, ' ') {
			return "", fmt.Errorf("want one word, got %q", s)
		}
		return strings.ToLower(s), nil
	}
	entry := &Node{Children: map[string]*Node{"size": {Field: &Field{Kind: Size, Positive: true, Max: 1 << 20}}}}
	return &Node{Children: map[string]*Node{
		"port": {Field: &Field{Kind: Int, Min: 1, Max: 9}},
		"dir":  {Field: &Field{Kind: Path}},
		"tag":  {Field: &Field{Kind: String, Check: word}},
		"any":  {Field: &Field{Kind: Custom, Parse: func(raw any) (any, error) { return fmt.Sprint(raw), nil }}},
		"items": {EntryName: func(key string) error {
			if strings.HasPrefix(key, "_") {
				return fmt.Errorf("%q starts with _", key)
			}
			return nil
		}, Each: entry, Children: map[string]*Node{"limit": {Field: &Field{Kind: Int, Max: 5}}}},
		"kinds": {KeysAre: "kind", KeysWant: []string{"a", "b"}, Children: map[string]*Node{"a": entry, "b": entry}},
	}}
}

func TestReadLayers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.toml")
	content := "port = 3\ndir = \"data\"\ntag = \"Hello\"\nany = 7\n[items.one]\nsize = \"1KiB\"\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := ReadFile(testTree(), path, "app.toml")
	if err != nil || len(file.Errs) > 0 {
		t.Fatalf("ReadFile: %v %v", err, file)
	}
	want := map[string]any{"port": 3, "dir": filepath.Join(dir, "data"), "tag": "hello", "any": "7",
		"items": map[string]any{"one": map[string]any{"size": int64(1024)}}}
	if !reflect.DeepEqual(file.Values, want) {
		t.Errorf("file values = %v, want %v", file.Values, want)
	}

	env := &Env{Prefix: "APP_", Ignore: []string{"APP_TOKEN"}, Aliases: map[string]string{"APP_P": "APP_PORT"}}
	got := env.Read(testTree(), []string{"APP_P=4", "APP_ITEMS_ONE_SIZE=2KiB", "APP_TOKEN=x", "OTHER=1"}, file.Values, "/cwd")
	want = map[string]any{"port": 4, "items": map[string]any{"one": map[string]any{"size": int64(2048)}}}
	if len(got.Errs) > 0 || !reflect.DeepEqual(got.Values, want) {
		t.Errorf("env = %v %v, want %v", got.Values, got.Errs, want)
	}

	fs := pflag.NewFlagSet("app", pflag.ContinueOnError)
	fs.Int("port", 1, "")
	fs.Bool("verbose", false, "")
	if err := fs.Parse([]string{"--port", "10", "--verbose"}); err != nil {
		t.Fatal(err)
	}
	flags := ReadFlags(testTree(), fs, []Flag{{Name: "port", Key: "port"}}, "/cwd")
	if len(flags.Values) != 0 || fmt.Sprint(flags.Errs) != "[--port: want an integer 1-9, got 10]" {
		t.Errorf("flags = %v %v", flags.Values, flags.Errs)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct{ file, env, want string }{
		{file: "prot = 1", want: `app.toml: unknown key "prot" (did you mean "port"?)`},
		{file: "tag = \"a b\"", want: `app.toml: tag: want one word, got "a b"`},
		{file: "tag = 1", want: `app.toml: tag: want a string, got 1`},
		{file: "[items._x]\nsize = 1", want: `app.toml: items._x: "_x" starts with _`},
		{file: "[items.x]\nsize = \"2MiB\"", want: `app.toml: items.x.size: want a size more than 0 and at most 1048576 bytes, such as "64MiB", got "2MiB"`},
		{file: "[kinds.c]", want: `app.toml: kinds.c: unknown kind "c" (want one of a, b)`},
		{env: "APP_PROT=1", want: `unknown environment variable APP_PROT (did you mean APP_PORT?)`},
		{env: "APP_OLD=1", want: `unknown environment variable APP_OLD (gone: unset it)`},
		{file: "[items.x]", env: "APP_ITEMS_X_SIZE=0", want: `APP_ITEMS_X_SIZE: want a size more than 0 and at most 1048576 bytes, such as "64MiB", got "0"`},
	}
	explain := func(short, closest string) string {
		if short == "OLD" {
			return " (gone: unset it)"
		}
		return ""
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "app.toml")
		if err := os.WriteFile(path, []byte(tt.file+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		file, err := ReadFile(testTree(), path, "app.toml")
		if err != nil {
			t.Fatal(err)
		}
		env := &Env{Prefix: "APP_", Explain: explain}
		errs := append(file.Errs, env.Read(testTree(), strings.Fields(tt.env), file.Values, "/").Errs...)
		if len(errs) != 1 || errs[0].Error() != tt.want || !errors.Is(errs[0], ErrInvalid) {
			t.Errorf("%q %q: errors %q, want %q", tt.file, tt.env, errs, tt.want)
		}
	}
}
