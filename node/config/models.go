package config

import (
	"cmp"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/config/schema"
	"github.com/ekisa-team/syn4pse/node/models/store"
)

// Defaults of the model keys.
const (
	defaultModality       = "llm"
	defaultEngine         = engine.DefaultEngine
	defaultBatchSize      = engine.DefaultBatchSize
	defaultGPULayers      = -1
	defaultMainGPU        = -1
	defaultParallel       = 0 // auto: node/models picks it for the memory budget
	defaultFlashAttention = "auto"
)

// decodeModels turns the [models.*] and [backends.*.*] tables, already checked key by key,
// into Models sorted by name, and checks what spans a table or several: a path is present,
// names are unique. fileName names the file in messages.
func decodeModels(raw map[string]any, fileName string) ([]Model, []error) {
	var models []Model
	var errs []error
	label := func(path ...string) string { return fileName + ": " + schema.KeyString(path) }
	declared := func(path ...string) string { return fmt.Sprintf("%s [%s]", fileName, schema.KeyString(path)) }

	named, _ := raw["models"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(named)) {
		table, ok := named[name].(map[string]any)
		if !ok {
			continue // one of the [models] table's own keys (keep_alive, max_memory, ...)
		}
		m := newModel(table, declared("models", name))
		m.Name = name
		m.Modality = canonicalModality(stringOr(table, "modality", defaultModality))
		m.Engine = canonicalEngine(stringOr(table, "engine", defaultEngineFor(m.Modality)))
		m.Path = stringOr(table, "path", "")
		m.Source = stringOr(table, "source", "")
		m.SHA256 = stringOr(table, "sha256", "")
		if m.Enabled && m.Path == "" && m.Source == "" && !ownsModel(m.Engine) {
			errs = append(errs, schema.Invalidf("%s: missing: set it to the model file, set source to pull it, or enabled = false", label("models", name, "path")))
		}
		models = append(models, m)
	}

	backends, _ := raw["backends"].(map[string]any)
	for _, modality := range slices.Sorted(maps.Keys(backends)) {
		ids, _ := backends[modality].(map[string]any)
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			m, err := decodeBackend(ids[id], modality, id, label, declared)
			if err != nil {
				errs = append(errs, err)
			}
			models = append(models, m)
		}
	}

	slices.SortStableFunc(models, func(a, b Model) int { return cmp.Compare(a.Name, b.Name) })
	for i := 1; i < len(models); i++ {
		if a, b := models[i-1], models[i]; a.Name == b.Name {
			errs = append(errs, schema.Invalidf("duplicate model name %q: %s and %s", a.Name, a.Declared, b.Declared))
		}
	}
	return models, errs
}

// decodeBackend reads one [backends.<modality>.<id>] table, the seed's shape: the engine
// defaults to the id and the name to the model's file name without ".gguf".
func decodeBackend(raw any, modality, id string, label, declared func(...string) string) (Model, error) {
	table, _ := raw.(map[string]any)
	m := newModel(table, declared("backends", modality, id))
	m.Modality = canonicalModality(modality)
	m.Engine = canonicalEngine(stringOr(table, "engine", id))
	m.Path = stringOr(table, "model", "")
	m.Name = stringOr(table, "name", "")
	switch {
	case !engineNameRE.MatchString(m.Engine):
		return m, schema.Invalidf("%s: the engine defaults to the table name %q, which is not an engine name: set engine",
			label("backends", modality, id), id)
	case m.Enabled && m.Path == "" && !ownsModel(m.Engine):
		return m, schema.Invalidf("%s: missing: set it to the model file, or enabled = false", label("backends", modality, id, "model"))
	case m.Name != "":
		return m, nil
	case m.Path == "":
		m.Name = id
	default:
		m.Name = nameFromFile(m.Path)
	}
	if !store.ValidModelName(m.Name) {
		return m, schema.Invalidf("%s: the model name defaults to %q, which is not a valid name: set name",
			label("backends", modality, id), m.Name)
	}
	return m, nil
}

// newModel is a Model with the engine options of table over their defaults.
func newModel(table map[string]any, declared string) Model {
	return Model{
		Enabled:        boolOr(table, "enabled", true),
		ContextLength:  intOr(table, "context_length", 0),
		Threads:        intOr(table, "threads", 0),
		BatchSize:      intOr(table, "batch_size", defaultBatchSize),
		GPULayers:      intOr(table, "gpu_layers", defaultGPULayers),
		MainGPU:        intOr(table, "main_gpu", defaultMainGPU),
		Parallel:       intOr(table, "parallel", defaultParallel),
		FlashAttention: stringOr(table, "flash_attention", defaultFlashAttention),
		Voice:          stringOr(table, "voice", ""),
		Language:       stringOr(table, "language", ""),
		Projector:      stringOr(table, "mmproj", ""),
		Vocoder:        stringOr(table, "vocoder", ""),
		Pooling:        stringOr(table, "pooling", ""),
		Declared:       declared,
	}
}

// defaultEngineFor is the engine of a [models.<name>] table that names none: llama.cpp, but
// PocketSphinx for speech-to-text and flite for text-to-speech.
func defaultEngineFor(modality string) string {
	switch modality {
	case "stt":
		return "pocketsphinx"
	case "tts":
		return "flite"
	}
	return defaultEngine
}

// ownsModel says whether an engine needs no model file: its voices are built in (flite,
// espeak-ng) or it has a default model directory (PocketSphinx: Debian's en-us model).
func ownsModel(engine string) bool {
	switch engine {
	case "pocketsphinx", "flite", "espeak_ng":
		return true
	}
	return false
}

// nameFromFile is the model name a file gives: its base name without ".gguf".
func nameFromFile(path string) string {
	base := filepath.Base(path)
	if ext := filepath.Ext(base); strings.EqualFold(ext, ".gguf") {
		base = strings.TrimSuffix(base, ext)
	}
	return base
}

// The typed getters below read values that check already converted; a missing key gives def.

func stringOr(table map[string]any, key, def string) string {
	if v, ok := table[key].(string); ok {
		return v
	}
	return def
}

func intOr(table map[string]any, key string, def int) int {
	if v, ok := table[key].(int); ok {
		return v
	}
	return def
}

func boolOr(table map[string]any, key string, def bool) bool {
	if v, ok := table[key].(bool); ok {
		return v
	}
	return def
}
