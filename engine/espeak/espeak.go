// Package espeak is the eSpeak NG text-to-speech engine ("espeak_ng" in syn4pse.toml). eSpeak NG
// is GPL-3, so it is never linked: every request runs the espeak-ng program (Debian's espeak-ng
// package), with the text on its standard input and WAV audio read from its standard output as
// it is made.
//
// Voices are espeak-ng's language codes ("en", "en-us", "es", "fr", ...), optionally with a voice
// variant ("en+f3", "es+klatt"); the model's default is LoadOptions.Voice, else
// LoadOptions.Language, else "en". Speed maps to 175×speed words a minute, clamped to
// espeak-ng's 80–450. Input is plain text (no SSML). At most LoadOptions.Parallel processes
// (default: the number of CPUs) run at once; more requests wait (Stats.Queued).
package espeak

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"github.com/ekisa-team/syn4pse/engine"
)

// Name is the engine's name in syn4pse.toml.
const Name = "espeak_ng"

// DefaultVoice speaks when neither the model nor the request names one.
const DefaultVoice = "en"

// SampleRate is the rate of espeak-ng's audio.
const SampleRate = 22050

// Engine runs espeak-ng.
type Engine struct {
	// Command is the program to run: a name looked up in PATH or a path ("espeak-ng" when "").
	Command string
}

// New returns the eSpeak NG engine, running espeak-ng from PATH.
func New() *Engine { return &Engine{} }

// Name implements engine.TTSEngine.
func (*Engine) Name() string { return Name }

// LoadTTS implements engine.TTSEngine: it finds the program and lists its voices (LoadOptions.Path
// is not used).
func (e *Engine) LoadTTS(ctx context.Context, opts engine.LoadOptions) (engine.TTS, error) {
	command := e.Command
	if command == "" {
		command = "espeak-ng"
	}
	path, err := exec.LookPath(command)
	if err != nil {
		return nil, fmt.Errorf("espeak_ng: %s is not installed (Debian/Ubuntu: apt-get install espeak-ng): %w", command, err)
	}
	languages, err := listVoices(ctx, path, "--voices")
	if err != nil {
		return nil, err
	}
	if len(languages) == 0 {
		return nil, fmt.Errorf("espeak_ng: %s --voices lists no voices (is espeak-ng-data installed?)", path)
	}
	variants, err := listVoices(ctx, path, "--voices=variant")
	if err != nil {
		return nil, err
	}
	m := &model{command: path, languages: languages, variants: variants}
	def, err := m.defaultVoice(opts)
	if err != nil {
		return nil, err
	}
	m.voice = def
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = runtime.NumCPU()
	}
	m.slots = engine.NewSlots(parallel)
	version, dataDir := describe(ctx, path)
	m.info = engine.ModelInfo{
		Architecture: "espeak-ng",
		Description:  fmt.Sprintf("%s (GPL-3, run as a separate process), %d languages", version, len(languages)),
		SizeBytes:    dirSize(dataDir),
		Parallel:     parallel,
		SampleRate:   SampleRate,
		Voices:       append([]string{def}, slices.DeleteFunc(slices.Clone(languages), func(l string) bool { return l == def })...),
		Languages:    slices.Clone(languages),
	}
	return m, nil
}

// defaultVoice is the model's voice: opts.Voice, else opts.Language (or its primary subtag),
// else DefaultVoice.
func (m *model) defaultVoice(opts engine.LoadOptions) (string, error) {
	if opts.Voice != "" {
		v, ok := m.resolve(opts.Voice)
		if !ok {
			return "", fmt.Errorf("espeak_ng: voice %q: %s", opts.Voice, m.voiceHelp())
		}
		return v, nil
	}
	if opts.Language != "" {
		for _, tag := range []string{opts.Language, primary(opts.Language)} {
			if v, ok := m.resolve(tag); ok {
				return v, nil
			}
		}
		return "", fmt.Errorf("espeak_ng: language %q: %s", opts.Language, m.voiceHelp())
	}
	if v, ok := m.resolve(DefaultVoice); ok {
		return v, nil
	}
	return "", fmt.Errorf("espeak_ng: no voice %q: %s", DefaultVoice, m.voiceHelp())
}

// resolve maps a requested voice to espeak-ng's spelling: a language code, any case, with "_"
// for "-", and an optional "+variant".
func (m *model) resolve(voice string) (string, bool) {
	lang, variant, hasVariant := strings.Cut(strings.ToLower(strings.ReplaceAll(voice, "_", "-")), "+")
	i := slices.IndexFunc(m.languages, func(l string) bool { return strings.EqualFold(l, lang) })
	if i < 0 {
		return "", false
	}
	if !hasVariant {
		return m.languages[i], true
	}
	j := slices.IndexFunc(m.variants, func(v string) bool { return strings.EqualFold(v, variant) })
	if j < 0 {
		return "", false
	}
	return m.languages[i] + "+" + m.variants[j], true
}

func (m *model) voiceHelp() string {
	return fmt.Sprintf("espeak-ng's voices are the language codes %s, each optionally with a variant (%q)", strings.Join(m.languages, ", "), "en+"+firstOr(m.variants, "f3"))
}

// otherLanguage matches an entry of the "Other Languages" column: "(en 2)".
var otherLanguage = regexp.MustCompile(`\(([^\s()]+) \d+\)`)

// listVoices runs `espeak-ng --voices[=variant]` and returns the language codes (or, for
// variants, the variant names), in its order, without duplicates. A language that is only
// another voice's alias ("en" for en-gb, "fr" for fr-fr) comes after the voices' own codes.
func listVoices(ctx context.Context, command, flag string) ([]string, error) {
	out, err := exec.CommandContext(ctx, command, flag).Output()
	if err != nil {
		return nil, fmt.Errorf("espeak_ng: %s %s: %w", command, flag, err)
	}
	var names, aliases []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[0] == "Pty" {
			continue
		}
		if flag != "--voices" {
			// Variants: the file column is "!v/name".
			names = append(names, strings.TrimPrefix(fields[4], "!v/"))
			continue
		}
		names = append(names, fields[1])
		for _, m := range otherLanguage.FindAllStringSubmatch(strings.Join(fields[5:], " "), -1) {
			aliases = append(aliases, m[1])
		}
	}
	var unique []string
	for _, n := range append(names, aliases...) {
		if !slices.Contains(unique, n) {
			unique = append(unique, n)
		}
	}
	return unique, nil
}

// describe returns espeak-ng's version line and its data directory, from --version
// ("eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data").
func describe(ctx context.Context, command string) (version, dataDir string) {
	out, err := exec.CommandContext(ctx, command, "--version").Output()
	if err != nil {
		return "eSpeak NG", ""
	}
	line := strings.TrimSpace(string(out))
	version, dataDir, _ = strings.Cut(line, "Data at:")
	version = strings.Replace(strings.TrimSpace(version), " text-to-speech:", "", 1)
	return version, strings.TrimSpace(dataDir)
}

func dirSize(dir string) int64 {
	if dir == "" {
		return 0
	}
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func primary(tag string) string {
	if i := strings.IndexAny(tag, "-_"); i >= 0 {
		return tag[:i]
	}
	return tag
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}
