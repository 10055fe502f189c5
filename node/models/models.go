// Package models keeps the node's model catalog and decides when models are in memory: every
// model declared in the config or pulled into the store, its state (available, loading, loaded,
// unavailable and why), and the loaded engine instances requests run on.
//
// Lifecycle: a model loads on demand (or by Load, or at start while it fits the memory budget);
// each request holds a Lease, so a model is never unloaded while one uses it; an idle model
// unloads after its keep-alive; a load that would pass the memory budget first unloads the
// least recently used idle model, waiting for a running request to end if it must. Loads of the
// same model are shared: concurrent requests trigger one load.
//
// Back-pressure: each model admits its parallel slots plus Options.MaxQueue requests (waiting
// for it to load or for a slot); one more is refused at once with ErrBusy, so a client or the
// router can go elsewhere instead of waiting out a timeout.
package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound means no model of that name is declared on this node.
	ErrNotFound = errors.New("model not found")
	// ErrUnavailable means the model is declared but cannot serve (missing or corrupt file,
	// unknown engine, disabled, larger than the memory budget).
	ErrUnavailable = errors.New("model unavailable")
	// ErrInUse means a model cannot be removed while it is loaded.
	ErrInUse = errors.New("model in use")
	// ErrBusy means the model's queue is full (Options.MaxQueue): the request was refused at
	// once rather than made to wait.
	ErrBusy = errors.New("model busy")
)

// State is where a model is in its life.
type State int

// Model states.
const (
	StateAvailable State = iota + 1
	StateLoading
	StateLoaded
	StateUnavailable
)

// Status describes one model for listings.
type Status struct {
	Name      string
	Modality  string
	Engine    string
	Path      string
	State     State
	Reason    string // why the model is unavailable
	SizeBytes int64
	// MemoryBytes is what the model takes when loaded: its file and its KV cache.
	MemoryBytes int64
	// Digest is "sha256:<hex>" of the model file, once computed ("" before).
	Digest string
	Info   engine.ModelInfo // set while loaded
	Stats  engine.Stats     // set while loaded
	// Refs counts the requests holding the model; LastUsed is when the last one ended.
	Refs int
	// Requests counts the requests admitted by Acquire and not yet released: running, queued
	// for a slot or waiting for the model to load.
	Requests  int
	LastUsed  time.Time
	LoadedAt  time.Time
	KeepAlive time.Duration
	// ExpiresAt is when keep-alive unloads the model; zero while in use or pinned.
	ExpiresAt time.Time
}

// Decl declares a model to the catalog: its name, kind and file, and how its engine loads it.
type Decl struct {
	Name string
	// Modality is llm, embeddings, stt, tts or vision.
	Modality string
	// Engine names the engine in the registry.
	Engine string
	// Path is the model file. It need not exist: the model is then listed as unavailable.
	Path string
	// Enabled says whether the node offers the model.
	Enabled bool
	// Options are the engine options; their Path is set from Path when the model loads.
	// Parallel 0 is auto: the catalog picks it for the memory budget (resolveParallel).
	Options engine.LoadOptions
	// Declared says where the model was declared, for messages: `syn4pse.toml [models.tiny]`.
	Declared string
}

// Options tune the manager.
type Options struct {
	// DataDir keeps the cache of file digests ("" keeps none).
	DataDir string
	// KeepAlive is how long an idle model stays loaded; 0 unloads at once, negative never.
	KeepAlive time.Duration
	// MaxMemory bounds the RAM of the loaded models together; 0 means no bound.
	MaxMemory int64
	// GPUMemory bounds, per GPU (as llama.cpp numbers them), the memory of the models offloaded
	// to it; empty on a node without GPUs, where every model counts in RAM.
	GPUMemory []int64
	// MaxQueue is how many requests may wait for each model beyond its parallel slots; past it
	// Acquire fails at once with ErrBusy. 0 means no limit.
	MaxQueue int
	// Probe, when set, runs before each load of a model with a file; its error fails the load
	// as the engine's would. The node sets it to a load probe in a child process, so that a
	// file that crashes the engine does not crash the node (node/loadprobe).
	Probe func(ctx context.Context, d Decl) error
	// OnChange is called (from any goroutine, never under the manager's lock) after a model
	// loads, unloads or changes state, and when a request for it is admitted or released.
	OnChange func()
}

// Manager owns the catalog. It is safe for concurrent use.
type Manager struct {
	registry *engine.Registry
	digests  *digestCache
	opts     Options
	mu       sync.Mutex
	entries  map[string]*entry
	// released is closed (and replaced) whenever a lease ends or a model unloads, waking loads
	// that wait for memory.
	released chan struct{}
	wg       sync.WaitGroup
	closed   bool
	// totals outlive entries and engine instances, so that they only grow (see Totals).
	totals map[string]*Totals
}

type entry struct {
	decl      Decl
	state     State
	reason    string
	size      int64
	kv        kvCache
	digest    string
	model     engine.Model
	loading   chan struct{} // non-nil while loading; closed when the load ends
	refs      int
	requests  int // admitted by Acquire, not yet released: the queue MaxQueue bounds
	lastUsed  time.Time
	loadedAt  time.Time
	keepAlive time.Duration // of the last request; the default until one sets it
	expiry    *time.Timer
	expiresAt time.Time
}

// New makes a catalog of the declared models. Nothing is loaded until Start or a request.
func New(registry *engine.Registry, decls []Decl, opts Options) *Manager {
	m := &Manager{registry: registry, digests: openDigestCache(opts.DataDir), opts: opts,
		entries: make(map[string]*entry, len(decls)), released: make(chan struct{}), totals: map[string]*Totals{}}
	for _, d := range decls {
		m.Register(d)
	}
	return m
}

// Register adds a model to the catalog (a pulled one, say), replacing one of the same name that
// is not loaded, loading or in use; it reports whether it did. It reads the header of the
// model's file for the size of its KV cache, and settles an auto parallel: the entry's
// declaration holds the number the engine gets, the budget counts and Info reports.
func (m *Manager) Register(d Decl) bool {
	e := &entry{decl: d, state: StateAvailable, keepAlive: m.opts.KeepAlive}
	if fi, err := os.Stat(d.Path); err == nil {
		e.size = fi.Size()
	}
	if d.Enabled && e.size > 0 && d.Modality == "llm" {
		kv, err := readKVCache(d.Path)
		if err != nil {
			slog.Debug("model KV cache size unknown: the memory budget counts its file only", "model", d.Name, "err", err)
		}
		e.kv = kv
	}
	e.decl.Options.Parallel = m.resolveParallel(e)
	if !d.Enabled {
		e.state, e.reason = StateUnavailable, "disabled in the config (enabled = false)"
	} else if reason := m.noEngine(d); reason != "" {
		e.state, e.reason = StateUnavailable, reason
	}
	m.mu.Lock()
	if old, ok := m.entries[d.Name]; ok && (old.model != nil || old.loading != nil || old.refs > 0 || old.requests > 0) {
		m.mu.Unlock()
		return false
	}
	m.entries[d.Name] = e
	m.mu.Unlock()
	m.changed()
	return true
}

// SetDigest records the digest of a model's file when it is known without hashing (a pulled
// blob, verified when it was stored).
func (m *Manager) SetDigest(name, digest string) {
	m.mu.Lock()
	if e, ok := m.entries[name]; ok {
		e.digest = digest
	}
	m.mu.Unlock()
	m.changed()
}

// MarkUnavailable sets why a model cannot serve yet (it is being pulled, say); Register
// replaces the mark.
func (m *Manager) MarkUnavailable(name, reason string) {
	m.mu.Lock()
	if e, ok := m.entries[name]; ok && e.model == nil && e.loading == nil {
		e.state, e.reason = StateUnavailable, reason
	}
	m.mu.Unlock()
	m.changed()
}

// Start loads the enabled models that fit the memory budget, in name order, in the
// background; then it computes the digests of the model files. A model that fails to load is
// marked unavailable with the reason; the others still load.
func (m *Manager) Start(ctx context.Context) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for _, name := range m.names() {
			if ctx.Err() != nil {
				return
			}
			if m.fitsAtStart(name) {
				if err := m.Load(ctx, name, nil); err != nil {
					slog.Debug("preload", "model", name, "err", err)
				}
			}
		}
		// Digests last: hashing a large file takes seconds and no request waits for it.
		for _, name := range m.names() {
			if ctx.Err() != nil {
				return
			}
			m.computeDigest(name)
		}
	}()
}

// fitsAtStart says whether preloading name keeps within the budget without evicting anything.
func (m *Manager) fitsAtStart(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[name]
	return e.state == StateAvailable && m.overLocked(e) < 0
}

func (m *Manager) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.entries))
	for n := range m.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (m *Manager) computeDigest(name string) {
	m.mu.Lock()
	e := m.entries[name]
	path, usable := e.decl.Path, e.state != StateUnavailable && e.digest == ""
	m.mu.Unlock()
	// A model with no file (flite's built-in voices) or a directory (a PocketSphinx model) has
	// no one file to hash.
	if fi, err := os.Stat(path); !usable || err != nil || !fi.Mode().IsRegular() {
		return
	}
	d, err := m.digests.digest(path)
	if err != nil {
		slog.Warn("model digest", "model", name, "err", err)
	}
	if d != "" {
		m.mu.Lock()
		e.digest = d
		m.mu.Unlock()
		m.changed()
	}
}

// noEngine says why no engine of this build can serve d, "" when one can.
func (m *Manager) noEngine(d Decl) string {
	var err error
	switch d.Modality {
	case "llm":
		_, err = m.registry.LLM(d.Engine)
	case "stt":
		_, err = m.registry.STT(d.Engine)
	case "tts":
		_, err = m.registry.TTS(d.Engine)
	case "embeddings":
		_, err = m.registry.Embedder(d.Engine)
	case "rerank":
		_, err = m.registry.Reranker(d.Engine)
	default:
		return fmt.Sprintf("this version serves llm, embeddings, rerank, stt and tts models; %s models are not served yet", d.Modality)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// open loads d with its modality's engine. A model file, when the declaration names one, must
// exist; engines with built-in voices or a default model directory take none.
func (m *Manager) open(ctx context.Context, d Decl) (engine.Model, error) {
	if d.Path != "" {
		if _, err := os.Stat(d.Path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("model file %s does not exist (declared in %s)", d.Path, d.Declared)
			}
			return nil, err
		}
	}
	if m.opts.Probe != nil && d.Path != "" {
		if err := m.opts.Probe(ctx, d); err != nil {
			return nil, fmt.Errorf("load %s: %w", d.Path, err)
		}
	}
	opts := d.Options
	opts.Path = d.Path
	model, err := m.load(ctx, d.Modality, d.Engine, opts)
	if err != nil {
		if d.Path == "" {
			return nil, fmt.Errorf("load %s: %w", d.Name, err)
		}
		return nil, fmt.Errorf("load %s: %w", d.Path, err)
	}
	return model, nil
}

func (m *Manager) load(ctx context.Context, modality, name string, opts engine.LoadOptions) (engine.Model, error) {
	return LoadWith(ctx, m.registry, modality, name, opts)
}

// LoadWith loads a model of modality with the engine called name in registry, outside any
// catalog (a load probe's child process does).
func LoadWith(ctx context.Context, registry *engine.Registry, modality, name string, opts engine.LoadOptions) (engine.Model, error) {
	switch modality {
	case "llm":
		eng, err := registry.LLM(name)
		if err != nil {
			return nil, err
		}
		return eng.LoadLLM(ctx, opts)
	case "stt":
		eng, err := registry.STT(name)
		if err != nil {
			return nil, err
		}
		return eng.LoadSTT(ctx, opts)
	case "tts":
		eng, err := registry.TTS(name)
		if err != nil {
			return nil, err
		}
		return eng.LoadTTS(ctx, opts)
	case "embeddings":
		eng, err := registry.Embedder(name)
		if err != nil {
			return nil, err
		}
		return eng.LoadEmbedder(ctx, opts)
	case "rerank":
		eng, err := registry.Reranker(name)
		if err != nil {
			return nil, err
		}
		return eng.LoadReranker(ctx, opts)
	}
	return nil, fmt.Errorf("modality %q is not served yet by this version", modality)
}

func (m *Manager) availableNames() string {
	var names []string
	for _, s := range m.List() {
		if s.State != StateUnavailable {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return "none (add a model to syn4pse.toml)"
	}
	return strings.Join(names, ", ")
}

// List returns every model, sorted by name.
func (m *Manager) List() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.entries))
	for name, e := range m.entries {
		out = append(out, e.status(name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Status describes the model called name.
func (m *Manager) Status(name string) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		return Status{}, false
	}
	return e.status(name), true
}

// status describes e; the caller holds the manager's lock.
func (e *entry) status(name string) Status {
	s := Status{Name: name, Modality: e.decl.Modality, Engine: e.decl.Engine, Path: e.decl.Path,
		State: e.state, Reason: e.reason, SizeBytes: e.size, MemoryBytes: e.memory(), Digest: e.digest, Refs: e.refs, Requests: e.requests,
		LastUsed: e.lastUsed, LoadedAt: e.loadedAt, KeepAlive: e.keepAlive, ExpiresAt: e.expiresAt}
	if e.model != nil {
		s.Info = e.model.Info()
		s.Stats = e.model.Stats()
	}
	return s
}

// Totals counts what happened to one model since the node started: its loads and unloads, and
// the work of every engine instance that served it. Unlike Status.Stats, which are the loaded
// instance's and start from zero at each load, they only grow: they are counters for metrics.
type Totals struct {
	Loads, LoadFailures, Unloads  int64
	PromptTokens, GeneratedTokens int64
	// GenerateTime is the time spent generating GeneratedTokens.
	GenerateTime time.Duration
}

// add counts the work in s.
func (t *Totals) add(s engine.Stats) {
	t.PromptTokens += s.PromptTokens
	t.GeneratedTokens += s.GeneratedTokens
	t.GenerateTime += s.GenerateTime
}

// Totals returns the totals of every model that has been loaded or failed to load, by name,
// the loaded instances' work included.
func (m *Manager) Totals() map[string]Totals {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Totals, len(m.totals))
	for name, t := range m.totals {
		sum := *t
		if e, ok := m.entries[name]; ok && e.model != nil {
			sum.add(e.model.Stats())
		}
		out[name] = sum
	}
	return out
}

// totalsLocked returns the totals of the model called name, creating them.
func (m *Manager) totalsLocked(name string) *Totals {
	t, ok := m.totals[name]
	if !ok {
		t = &Totals{}
		m.totals[name] = t
	}
	return t
}

// changed tells the owner that the catalog changed.
func (m *Manager) changed() {
	if m.opts.OnChange != nil {
		m.opts.OnChange()
	}
}

// Close stops loading and frees every loaded model, waiting for running requests to end.
func (m *Manager) Close() error {
	m.wg.Wait()
	m.mu.Lock()
	m.closed = true
	var loaded []engine.Model
	for _, e := range m.entries {
		if e.model != nil {
			loaded = append(loaded, e.model)
			e.model = nil
			e.state, e.reason = StateUnavailable, "the node is shutting down"
			if e.expiry != nil {
				e.expiry.Stop()
			}
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, model := range loaded {
		errs = append(errs, model.Close())
	}
	return errors.Join(errs...)
}
