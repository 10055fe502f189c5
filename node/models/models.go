// Package models keeps the node's model catalog: every model declared in the config, its state
// (loading, loaded, unavailable and why) and the loaded engine instance requests run on.
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
	"github.com/ekisa-team/syn4pse/node/config"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound means no model of that name is declared on this node.
	ErrNotFound = errors.New("model not found")
	// ErrUnavailable means the model is declared but cannot serve (missing or corrupt file,
	// unknown engine, disabled).
	ErrUnavailable = errors.New("model unavailable")
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
	// Digest is "sha256:<hex>" of the model file, once computed ("" before).
	Digest string
	Info   engine.ModelInfo // set once loaded
	Stats  engine.Stats     // set once loaded
}

// Manager owns the catalog. It is safe for concurrent use.
type Manager struct {
	registry *engine.Registry
	digests  *digestCache
	mu       sync.Mutex
	entries  map[string]*entry
	wg       sync.WaitGroup
}

type entry struct {
	decl   config.Model
	state  State
	reason string
	size   int64
	digest string
	llm    engine.LLM
	loaded chan struct{} // closed when loading ends, in success or failure
}

// New makes a catalog of the declared models. Nothing is loaded until Start. dataDir keeps the
// cache of file digests ("" keeps none).
func New(registry *engine.Registry, decls []config.Model, dataDir string) *Manager {
	m := &Manager{registry: registry, digests: openDigestCache(dataDir), entries: make(map[string]*entry, len(decls))}
	for _, d := range decls {
		e := &entry{decl: d, state: StateAvailable, loaded: make(chan struct{})}
		if fi, err := os.Stat(d.Path); err == nil {
			e.size = fi.Size()
		}
		m.entries[d.Name] = e
	}
	return m
}

// Start loads every enabled model in the background, one at a time. A model that fails to
// load is marked unavailable with the reason; the others still load.
func (m *Manager) Start(ctx context.Context) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for _, name := range m.names() {
			m.load(ctx, name)
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

func (m *Manager) computeDigest(name string) {
	m.mu.Lock()
	e := m.entries[name]
	path, usable := e.decl.Path, e.state != StateUnavailable
	m.mu.Unlock()
	if !usable {
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
	}
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

func (m *Manager) load(ctx context.Context, name string) {
	m.mu.Lock()
	e := m.entries[name]
	if !e.decl.Enabled {
		e.state, e.reason = StateUnavailable, "disabled in the config (enabled = false)"
		m.mu.Unlock()
		close(e.loaded)
		return
	}
	e.state = StateLoading
	m.mu.Unlock()

	start := time.Now()
	llm, err := m.open(ctx, e.decl)

	m.mu.Lock()
	if err != nil {
		e.state, e.reason = StateUnavailable, err.Error()
		slog.Warn("model unavailable", "model", name, "path", e.decl.Path, "reason", e.reason)
	} else {
		e.state, e.llm = StateLoaded, llm
		slog.Info("model loaded", "model", name, "took", time.Since(start).Round(time.Millisecond), "context", llm.Info().ContextLength)
	}
	m.mu.Unlock()
	close(e.loaded)
}

func (m *Manager) open(ctx context.Context, d config.Model) (engine.LLM, error) {
	if d.Modality != "llm" {
		return nil, fmt.Errorf("modality %q is not served yet by this version", d.Modality)
	}
	eng, err := m.registry.LLM(d.Engine)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(d.Path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("model file %s does not exist (declared in %s)", d.Path, d.Declared)
		}
		return nil, err
	}
	llm, err := eng.LoadLLM(ctx, engine.LoadOptions{
		Path: d.Path, ContextLength: d.ContextLength, Threads: d.Threads, BatchSize: d.BatchSize,
		GPULayers: d.GPULayers, Parallel: d.Parallel, FlashAttention: d.FlashAttention,
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", d.Path, err)
	}
	return llm, nil
}

// LLM returns the loaded model called name, waiting while it loads. It fails with ErrNotFound
// (naming the models that exist) or ErrUnavailable (with the reason).
func (m *Manager) LLM(ctx context.Context, name string) (engine.LLM, error) {
	m.mu.Lock()
	e, ok := m.entries[name]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a model of this node; available: %s", ErrNotFound, name, m.availableNames())
	}
	select {
	case <-e.loaded:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.llm == nil {
		return nil, fmt.Errorf("%w: %q: %s", ErrUnavailable, name, e.reason)
	}
	return e.llm, nil
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
		State: e.state, Reason: e.reason, SizeBytes: e.size, Digest: e.digest}
	if e.llm != nil {
		s.Info = e.llm.Info()
		s.Stats = e.llm.Stats()
	}
	return s
}

// Close stops loading and frees every loaded model, waiting for running requests to end.
func (m *Manager) Close() error {
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, e := range m.entries {
		if e.llm != nil {
			errs = append(errs, e.llm.Close())
			e.llm = nil
			e.state, e.reason = StateUnavailable, "the node is shutting down"
		}
	}
	return errors.Join(errs...)
}
