package models

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
)

// Lease is one request's hold on a loaded model: the model stays loaded until Release.
type Lease struct {
	m         *Manager
	e         *entry
	model     engine.Model
	keepAlive *time.Duration
	admitted  bool // a request's lease, counted in e.requests
	once      sync.Once
}

// Model is the loaded model.
func (l *Lease) Model() engine.Model { return l.model }

// LLM is the loaded model as a language model, nil when it is not one.
func (l *Lease) LLM() engine.LLM { llm, _ := l.model.(engine.LLM); return llm }

// STT is the loaded model as a speech-to-text model, nil when it is not one.
func (l *Lease) STT() engine.STT { stt, _ := l.model.(engine.STT); return stt }

// TTS is the loaded model as a text-to-speech model, nil when it is not one.
func (l *Lease) TTS() engine.TTS { tts, _ := l.model.(engine.TTS); return tts }

// Embedder is the leased model as an embeddings model, nil when it is not one.
func (l *Lease) Embedder() engine.Embedder { e, _ := l.model.(engine.Embedder); return e }

// Reranker is the leased model as a reranker, nil when it is not one.
func (l *Lease) Reranker() engine.Reranker { r, _ := l.model.(engine.Reranker); return r }

// Release ends the hold; with no other holder the model's keep-alive starts.
func (l *Lease) Release() {
	l.once.Do(func() { l.m.release(l.e, l.keepAlive, l.admitted) })
}

// Acquire returns the model called name loaded and held for one request, loading it (and
// unloading idle models to make room) when needed. keepAlive, when not nil, replaces the
// model's keep-alive from this request on. It fails with ErrNotFound (naming the models that
// exist), ErrUnavailable (with the reason) or, at once, ErrBusy when MaxQueue requests already
// wait for the model. The request counts in the model's queue until Release, or until Acquire
// fails (its context ended while it waited, say).
func (m *Manager) Acquire(ctx context.Context, name string, keepAlive *time.Duration) (*Lease, error) {
	e, err := m.admit(name)
	if err != nil {
		return nil, err
	}
	lease, err := m.acquire(ctx, name, keepAlive)
	if err != nil {
		m.leave(e)
		return nil, err
	}
	// Register and Remove leave an entry with requests in place, so the lease is e's; without
	// e the model appeared after admit looked, and the request goes uncounted.
	lease.admitted = e != nil
	return lease, nil
}

// admit counts a request in the queue of the model called name, or refuses it with ErrBusy
// when the queue is full. It returns the entry counted in, nil when there is none (acquire
// then says why).
func (m *Manager) admit(name string) (*entry, error) {
	m.mu.Lock()
	e, ok := m.entries[name]
	if !ok || m.closed {
		m.mu.Unlock()
		return nil, nil
	}
	if waiting := e.requests - e.slotsLocked(); m.opts.MaxQueue > 0 && waiting >= m.opts.MaxQueue {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: the queue of %q is full (%d waiting for a slot, models.max_queue = %d); retry later or add a node",
			ErrBusy, name, waiting, m.opts.MaxQueue)
	}
	e.requests++
	m.mu.Unlock()
	m.changed()
	return e, nil
}

// leave takes a request that admit counted out of e's queue.
func (m *Manager) leave(e *entry) {
	if e == nil {
		return
	}
	m.mu.Lock()
	e.requests--
	m.mu.Unlock()
	m.changed()
}

// slotsLocked is how many requests e runs at once: its engine's parallel sequences.
func (e *entry) slotsLocked() int {
	if e.model != nil {
		return max(e.model.Info().Parallel, 1)
	}
	return max(e.decl.Options.Parallel, 1)
}

// acquire is Acquire without the queue: Load uses it directly, so that loading a model by hand
// neither counts as a request nor is refused by a full queue.
func (m *Manager) acquire(ctx context.Context, name string, keepAlive *time.Duration) (*Lease, error) {
	for {
		m.mu.Lock()
		e, ok := m.entries[name]
		switch {
		case !ok:
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: %q is not a model of this node; available: %s", ErrNotFound, name, m.availableNames())
		case m.closed:
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: the node is shutting down", ErrUnavailable)
		case e.model != nil:
			e.refs++
			e.stopExpiry()
			model := e.model
			m.mu.Unlock()
			return &Lease{m: m, e: e, model: model, keepAlive: keepAlive}, nil
		case e.state == StateUnavailable:
			reason := e.reason
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: %q: %s", ErrUnavailable, name, reason)
		case e.loading != nil:
			wait := e.loading
			m.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		// Not loaded: make room, then load (the lock is released by loadLocked).
		if wait, err := m.makeRoomLocked(e); err != nil {
			m.mu.Unlock()
			return nil, err
		} else if wait != nil {
			m.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		m.loadLocked(name, e)
	}
}

// Load loads the model now (if it is not loaded) and starts its keep-alive.
func (m *Manager) Load(ctx context.Context, name string, keepAlive *time.Duration) error {
	lease, err := m.acquire(ctx, name, keepAlive)
	if err != nil {
		return err
	}
	lease.Release()
	return nil
}

// Unload unloads the model as soon as no request holds it (at once when none does).
func (m *Manager) Unload(name string) error {
	m.mu.Lock()
	e, ok := m.entries[name]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: %q is not a model of this node", ErrNotFound, name)
	}
	zero := time.Duration(0)
	if e.model != nil && e.refs == 0 {
		llm := m.unloadLocked(name, e)
		m.mu.Unlock()
		llm.Close()
		m.changed()
		return nil
	}
	e.keepAlive = zero // the last lease to end unloads it
	m.mu.Unlock()
	return nil
}

// Remove drops a model from the catalog: refused while a request holds it or, without
// force, while it is loaded. It returns the file the model used, for the caller to delete.
func (m *Manager) Remove(name string, force bool) (string, error) {
	m.mu.Lock()
	e, ok := m.entries[name]
	if !ok {
		m.mu.Unlock()
		return "", fmt.Errorf("%w: %q is not a model of this node", ErrNotFound, name)
	}
	if e.refs > 0 || e.requests > 0 || e.loading != nil || (e.model != nil && !force) {
		m.mu.Unlock()
		return "", fmt.Errorf("%w: %q is loaded; unload it first or force", ErrInUse, name)
	}
	var model engine.Model
	if e.model != nil {
		model = m.unloadLocked(name, e)
	}
	delete(m.entries, name)
	m.mu.Unlock()
	if model != nil {
		model.Close()
	}
	m.changed()
	return e.decl.Path, nil
}

// release ends one lease of e; admitted says it was a request's, counted in e's queue.
func (m *Manager) release(e *entry, keepAlive *time.Duration, admitted bool) {
	m.mu.Lock()
	e.refs--
	if admitted {
		e.requests--
	}
	e.lastUsed = time.Now()
	if keepAlive != nil {
		e.keepAlive = *keepAlive
	}
	var closing engine.Model
	if e.refs == 0 && e.model != nil {
		switch {
		case e.keepAlive == 0:
			closing = m.unloadLocked(e.decl.Name, e)
		case e.keepAlive > 0:
			e.startExpiry(m, e.keepAlive)
		}
	}
	m.wakeLocked()
	m.mu.Unlock()
	if closing != nil {
		closing.Close()
	}
	if closing != nil || admitted {
		m.changed()
	}
}

// makeRoomLocked unloads idle models, least recently used first, until e fits the budget. It
// returns a channel to wait on when only models in use stand in the way.
func (m *Manager) makeRoomLocked(e *entry) (<-chan struct{}, error) {
	for {
		pool := m.overLocked(e)
		if pool < 0 {
			return nil, nil
		}
		victimName, victim := m.lruIdleLocked(e, pool)
		if victim != nil {
			llm := m.unloadLocked(victimName, victim)
			slog.Info("model unloaded to make room", "model", victimName, "for", e.decl.Name)
			// Closing under the lock is safe (no request holds it) and keeps the budget true;
			// the load that follows reports the change.
			llm.Close()
			continue
		}
		if m.usedLocked()[pool] == 0 {
			return nil, fmt.Errorf("%w: %q needs %d MiB of %s, whose budget is %d MiB", ErrUnavailable, e.decl.Name,
				m.footprint(e)[pool]>>20, poolName(pool), m.budget(pool)>>20)
		}
		return m.released, nil // every model in the way is in use: wait for one to be released
	}
}

// lruIdleLocked is the loaded model no request holds that was used longest ago and takes room
// in pool, other than except.
func (m *Manager) lruIdleLocked(except *entry, pool int) (string, *entry) {
	var name string
	var best *entry
	for n, e := range m.entries {
		if e == except || e.model == nil || e.refs > 0 || m.footprint(e)[pool] == 0 {
			continue
		}
		if best == nil || e.lastUsed.Before(best.lastUsed) {
			name, best = n, e
		}
	}
	return name, best
}

// loadLocked loads e with the lock released during the load, and returns with it released.
func (m *Manager) loadLocked(name string, e *entry) {
	e.loading = make(chan struct{})
	e.state = StateLoading
	m.mu.Unlock()
	m.changed()

	start := time.Now()
	// A shared load must not die with the request that started it.
	llm, err := m.open(context.Background(), e.decl)

	m.mu.Lock()
	close(e.loading)
	e.loading = nil
	if err != nil {
		m.totalsLocked(name).LoadFailures++
		e.state, e.reason = StateUnavailable, err.Error()
		slog.Warn("model unavailable", "model", name, "path", e.decl.Path, "reason", e.reason)
	} else {
		e.state, e.model, e.loadedAt, e.lastUsed = StateLoaded, llm, time.Now(), time.Now()
		m.totalsLocked(name).Loads++
		slog.Info("model loaded", "model", name, "took", time.Since(start).Round(time.Millisecond), "context", llm.Info().ContextLength,
			"parallel", llm.Info().Parallel)
	}
	m.wakeLocked()
	m.mu.Unlock()
	m.changed()
}

// unloadLocked takes e's model out of the table and returns it for the caller to Close.
func (m *Manager) unloadLocked(name string, e *entry) engine.Model {
	model := e.model
	t := m.totalsLocked(name)
	t.Unloads++
	t.add(model.Stats()) // no request holds the model: its counts are final
	e.model, e.state = nil, StateAvailable
	e.stopExpiry()
	e.keepAlive = m.opts.KeepAlive
	m.wakeLocked()
	slog.Info("model unloaded", "model", name)
	return model
}

// wakeLocked wakes the loads waiting for memory.
func (m *Manager) wakeLocked() {
	close(m.released)
	m.released = make(chan struct{})
}

func (e *entry) startExpiry(m *Manager, after time.Duration) {
	e.stopExpiry()
	e.expiresAt = time.Now().Add(after)
	var timer *time.Timer
	// expire reads timer under m.mu, which the caller holds until timer is set.
	timer = time.AfterFunc(after, func() { m.expire(e, &timer) })
	e.expiry = timer
}

func (e *entry) stopExpiry() {
	if e.expiry != nil {
		e.expiry.Stop()
		e.expiry = nil
	}
	e.expiresAt = time.Time{}
}

// expire unloads e when its keep-alive timer fired and nothing used it since.
func (m *Manager) expire(e *entry, timer **time.Timer) {
	m.mu.Lock()
	if e.expiry != *timer || e.refs > 0 || e.model == nil || m.closed {
		m.mu.Unlock()
		return
	}
	llm := m.unloadLocked(e.decl.Name, e)
	m.mu.Unlock()
	llm.Close()
	m.changed()
}
