package engine

import (
	"context"
	"sync"
)

// Slots admits at most n requests at a time to a model, counts them for Stats, and on Close
// refuses new requests and waits for the admitted ones to end. The engines without a scheduler
// of their own (the speech engines) share it. The zero value is not usable: use NewSlots.
type Slots struct {
	tokens  chan struct{}
	closing chan struct{}
	running sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	active   int
	queued   int
	requests int64
}

// NewSlots returns slots for n requests at a time (at least one).
func NewSlots(n int) *Slots {
	return &Slots{tokens: make(chan struct{}, max(n, 1)), closing: make(chan struct{})}
}

// Acquire waits for a free slot. It fails with ctx's error when ctx ends first, and with
// ErrClosed once Close was called. Every nil return must be followed by one Release.
func (s *Slots) Acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.running.Add(1)
	s.requests++
	s.queued++
	s.mu.Unlock()
	var err error
	select {
	case s.tokens <- struct{}{}:
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.closing:
		err = ErrClosed
	}
	s.mu.Lock()
	s.queued--
	if err == nil {
		s.active++
	}
	s.mu.Unlock()
	if err != nil {
		s.running.Done()
	}
	return err
}

// Release frees the slot an Acquire took.
func (s *Slots) Release() {
	<-s.tokens
	s.mu.Lock()
	s.active--
	s.mu.Unlock()
	s.running.Done()
}

// Stats counts the requests running, waiting and admitted so far.
func (s *Slots) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Active: s.active, Queued: s.queued, Requests: s.requests}
}

// Close makes waiting and later Acquires fail with ErrClosed, then waits for the running
// requests to Release. It reports whether this call closed the slots (false when an earlier one
// did), so the caller frees what they guard once.
func (s *Slots) Close() bool {
	s.mu.Lock()
	first := !s.closed
	if first {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.running.Wait()
	return first
}
