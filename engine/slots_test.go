package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSlotsAdmitQueueAndClose(t *testing.T) {
	s := NewSlots(2)
	for range 2 {
		if err := s.Acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// A third waits; a cancelled wait leaves with ctx's error.
	ctx, cancel := context.WithCancel(t.Context())
	waited := make(chan error)
	go func() { waited <- s.Acquire(ctx) }()
	for s.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	if st := s.Stats(); st.Active != 2 || st.Requests != 3 {
		t.Fatalf("stats %+v, want 2 active of 3 requests", st)
	}
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	// Another waits until Close: it fails with ErrClosed, and Close waits for the running two.
	go func() { waited <- s.Acquire(t.Context()) }()
	for s.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan bool)
	go func() { closed <- s.Close() }()
	if err := <-waited; !errors.Is(err, ErrClosed) {
		t.Fatalf("wait during Close: %v", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while two requests ran")
	case <-time.After(20 * time.Millisecond):
	}
	s.Release()
	s.Release()
	if !<-closed || s.Close() {
		t.Fatal("the first Close reports true, a later one false")
	}
	if err := s.Acquire(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
