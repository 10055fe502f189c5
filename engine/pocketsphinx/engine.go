// Package pocketsphinx is the PocketSphinx speech-to-text engine ("pocketsphinx" in
// syn4pse.toml), on native/pocketsphinx.
//
// A model is a directory holding an acoustic model (a folder with an mdef file), an n-gram
// language model (*.lm.bin, *.lm or *.lm.DMP; not a phone model) and a pronunciation dictionary
// (*.dict or *.dic), as Debian's pocketsphinx-en-us installs in DefaultModelDir.
//
// A decoder is not safe for concurrent use and costs about 80 MB and a second to make, so a
// model keeps a pool of at most LoadOptions.Parallel decoders (default 2), made when first
// needed and reused; requests beyond that wait for one (Stats.Queued). Transcribe splits the
// audio into utterances where the decoder's voice-activity detector hears a pause (0.5 s),
// emitting each as a Segment, and emits partial hypotheses at most every 200 ms of audio while
// an utterance runs. Audio without speech gives an empty Text, not an error: silence is a
// valid answer for a live stream.
package pocketsphinx

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/pocketsphinx"
)

// Name is the engine's name in syn4pse.toml.
const Name = "pocketsphinx"

// DefaultModelDir is the model used when LoadOptions.Path is "": Debian's pocketsphinx-en-us.
const DefaultModelDir = "/usr/share/pocketsphinx/model/en-us"

// defaultParallel is the pool size when LoadOptions.Parallel is unset: two decoders let a
// second request run while one is long, for 80 MB more, only once it is needed.
const defaultParallel = 2

// Engine loads PocketSphinx models.
type Engine struct{}

// New returns the PocketSphinx engine.
func New() *Engine { return &Engine{} }

// Name implements engine.STTEngine.
func (*Engine) Name() string { return Name }

// LoadSTT implements engine.STTEngine. It makes the first decoder at once, so a broken model
// fails here; ctx is checked before (loading cannot be interrupted).
func (*Engine) LoadSTT(ctx context.Context, opts engine.LoadOptions) (engine.STT, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := opts.Path
	if dir == "" {
		dir = DefaultModelDir
	}
	files, err := findModel(dir)
	if err != nil {
		return nil, err
	}
	first, err := native.NewDecoder(files.config())
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	language := opts.Language
	if language == "" {
		language = "en"
	}
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = defaultParallel
	}
	info := engine.ModelInfo{
		Architecture: "pocketsphinx",
		Description: fmt.Sprintf("PocketSphinx 5prealpha: acoustic model %s, language model %s, dictionary %s",
			filepath.Base(files.acoustic), filepath.Base(files.lm), filepath.Base(files.dict)),
		SizeBytes:  files.size(),
		Parallel:   parallel,
		SampleRate: first.SampleRate(),
		Languages:  []string{language},
	}
	return newModel(files.config(), info, first), nil
}

// modelFiles are the three parts of a model directory.
type modelFiles struct {
	acoustic, lm, dict string
}

func (f modelFiles) config() native.Config {
	return native.Config{AcousticModel: f.acoustic, LanguageModel: f.lm, Dictionary: f.dict}
}

// size is the bytes of what a decoder loads: the acoustic model's files, the language model
// and the dictionary.
func (f modelFiles) size() int64 {
	var n int64
	entries, _ := os.ReadDir(f.acoustic)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	for _, p := range []string{f.lm, f.dict} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// findModel finds the acoustic model (dir or a folder in it with an mdef file), the language
// model and the dictionary in dir; the error names what is missing.
func findModel(dir string) (modelFiles, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return modelFiles{}, fmt.Errorf("pocketsphinx model %s: %w (the default English model is Debian's pocketsphinx-en-us)", dir, err)
	}
	var f modelFiles
	if isAcousticModel(dir) {
		f.acoustic = dir
	}
	var lms, dicts []string
	for _, e := range entries {
		name, path := e.Name(), filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			if f.acoustic == "" && isAcousticModel(path) {
				f.acoustic = path
			}
		case isLanguageModel(name):
			lms = append(lms, path)
		case strings.HasSuffix(name, ".dict") || strings.HasSuffix(name, ".dic"):
			dicts = append(dicts, path)
		}
	}
	// Prefer the binary form when a model comes in several.
	slices.SortStableFunc(lms, func(a, b string) int {
		return boolRank(strings.HasSuffix(b, ".lm.bin")) - boolRank(strings.HasSuffix(a, ".lm.bin"))
	})
	var missing []string
	if f.acoustic == "" {
		missing = append(missing, "an acoustic model (a folder with an mdef file)")
	}
	if len(lms) == 0 {
		missing = append(missing, "a language model (*.lm.bin, *.lm or *.lm.DMP)")
	} else {
		f.lm = lms[0]
	}
	if len(dicts) == 0 {
		missing = append(missing, "a dictionary (*.dict or *.dic)")
	} else {
		f.dict = dicts[0]
	}
	if len(missing) > 0 {
		return modelFiles{}, fmt.Errorf("pocketsphinx model %s has no %s", dir, strings.Join(missing, ", no "))
	}
	return f, nil
}

func isAcousticModel(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "mdef"))
	return err == nil && fi.Mode().IsRegular()
}

// isLanguageModel says whether a file name is a word n-gram model; phone models
// (en-us-phone.lm.bin) are for phoneme recognition and are skipped.
func isLanguageModel(name string) bool {
	lower := strings.ToLower(name)
	if strings.Contains(lower, "phone") {
		return false
	}
	for _, ext := range []string{".lm.bin", ".lm", ".lm.dmp", ".dmp"} {
		if strings.HasSuffix(lower, ext) {
			return true
		}
	}
	return false
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}
