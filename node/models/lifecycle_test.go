package models_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/enginetest"
	"github.com/ekisa-team/syn4pse/node/models"
)

// catalog is a manager with two generated models, a and b, in RAM.
func catalog(t *testing.T, opts models.Options) (*models.Manager, int64) {
	t.Helper()
	return gpuCatalog(t, opts, placed{name: "a"}, placed{name: "b"})
}

func state(t *testing.T, m *models.Manager, name string) models.State {
	t.Helper()
	s, ok := m.Status(name)
	if !ok {
		t.Fatalf("no model %s", name)
	}
	return s.State
}

// waitState polls for a state change driven by a timer: a liveness bound, not a timing check.
func waitState(t *testing.T, m *models.Manager, name string, want models.State) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for state(t, m, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %v, want %v", name, state(t, m, name), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKeepAliveUnloads(t *testing.T) {
	m, _ := catalog(t, models.Options{KeepAlive: 50 * time.Millisecond})
	if err := m.Load(t.Context(), "a", nil); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "a", models.StateAvailable)

	// A request's keep-alive replaces the default: -1 pins, 0 unloads as soon as it ends.
	forever, zero := time.Duration(-1), time.Duration(0)
	lease, err := m.Acquire(t.Context(), "a", &forever)
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	if s, _ := m.Status("a"); s.State != models.StateLoaded || !s.ExpiresAt.IsZero() {
		t.Fatalf("pinned model: %+v", s)
	}
	lease, err = m.Acquire(t.Context(), "a", &zero)
	if err != nil {
		t.Fatal(err)
	}
	if state(t, m, "a") != models.StateLoaded {
		t.Fatal("unloaded while a lease holds it")
	}
	lease.Release()
	if got := state(t, m, "a"); got != models.StateAvailable {
		t.Fatalf("keep_alive 0: state %v after the last release", got)
	}
}

func TestMemoryBudgetEvictsOnlyAfterTheStreamEnds(t *testing.T) {
	// Both files are the same size; the budget has room for one model only.
	m, size := catalog(t, models.Options{KeepAlive: time.Hour})
	m.Close()
	m, _ = catalog(t, models.Options{KeepAlive: time.Hour, MaxMemory: size + size/2})

	lease, err := m.Acquire(t.Context(), "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Generate on a while b asks to load.
	stop := make(chan struct{})
	streaming := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-stop; cancel() }()
		_, err := lease.LLM().Generate(ctx, engine.GenerateRequest{Prompt: "Once", Sampling: engine.DefaultSampling(), IgnoreEOS: true, MaxTokens: 200},
			func(string) error { return nil })
		streaming <- err
	}()
	loadedB := make(chan error, 1)
	go func() {
		lb, err := m.Acquire(context.Background(), "b", nil)
		if err == nil {
			lb.Release()
		}
		loadedB <- err
	}()
	select {
	case err := <-loadedB:
		t.Fatalf("b loaded while a was in use (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	if state(t, m, "a") != models.StateLoaded {
		t.Fatal("a unloaded while in use")
	}
	close(stop)
	<-streaming
	lease.Release()
	if err := <-loadedB; err != nil {
		t.Fatalf("b after a's stream ended: %v", err)
	}
	if state(t, m, "a") != models.StateAvailable || state(t, m, "b") != models.StateLoaded {
		t.Fatalf("a %v, b %v: want a evicted, b loaded", state(t, m, "a"), state(t, m, "b"))
	}
}

func TestConcurrentRequestsShareOneLoad(t *testing.T) {
	var changes atomic.Int32
	m, _ := catalog(t, models.Options{KeepAlive: time.Hour, OnChange: func() { changes.Add(1) }})
	var wg sync.WaitGroup
	leases := make(chan *models.Lease, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := m.Acquire(t.Context(), "a", nil)
			if err != nil {
				t.Error(err)
				return
			}
			leases <- l
		}()
	}
	wg.Wait()
	close(leases)
	var llm engine.LLM
	for l := range leases {
		if llm != nil && l.LLM() != llm {
			t.Fatal("two loads of one model")
		}
		llm = l.LLM()
		l.Release()
	}
	if s, _ := m.Status("a"); s.Refs != 0 || s.State != models.StateLoaded {
		t.Fatalf("after release: %+v", s)
	}
	if changes.Load() == 0 {
		t.Fatal("no change reported")
	}
}

func TestRemoveRefusesLoaded(t *testing.T) {
	m, _ := catalog(t, models.Options{KeepAlive: time.Hour})
	if err := m.Load(t.Context(), "a", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Remove("a", false); err == nil {
		t.Fatal("removed a loaded model without force")
	}
	if _, err := m.Remove("a", true); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Status("a"); ok {
		t.Fatal("a still listed")
	}
}

// fakeCatalog is a manager over eng (the fake engine) with one model, "m", of one slot.
func fakeCatalog(t *testing.T, eng *enginetest.Engine, opts models.Options) *models.Manager {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	var registry engine.Registry
	registry.RegisterLLM(eng)
	m := models.New(&registry, []models.Decl{{Name: "m", Modality: "llm", Engine: engine.DefaultEngine, Path: path, Enabled: true,
		Options: engine.LoadOptions{Parallel: 1}}}, opts)
	t.Cleanup(func() { m.Close() })
	return m
}

// waitRequests polls until the model counts want requests: a liveness bound for goroutines to
// reach Acquire, not a timing check.
func waitRequests(t *testing.T, m *models.Manager, name string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, _ := m.Status(name)
		if s.Requests == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d requests, want %d", name, s.Requests, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQueueRefusesPastMaxQueueAtOnce(t *testing.T) {
	m := fakeCatalog(t, &enginetest.Engine{}, models.Options{KeepAlive: time.Hour, MaxQueue: 1})
	running, err := m.Acquire(t.Context(), "m", nil)
	if err != nil {
		t.Fatal(err)
	}
	queued, err := m.Acquire(t.Context(), "m", nil)
	if err != nil {
		t.Fatalf("one request waiting is within max_queue 1: %v", err)
	}
	_, err = m.Acquire(t.Context(), "m", nil)
	if !errors.Is(err, models.ErrBusy) || !strings.Contains(err.Error(), "retry later") {
		t.Fatalf("third request: %v, want ErrBusy saying what to do", err)
	}
	if s, _ := m.Status("m"); s.Requests != 2 || s.Refs != 2 {
		t.Fatalf("a refused request was counted: %+v", s)
	}
	// Loading by hand is no request: a full queue neither refuses nor counts it.
	if err := m.Load(t.Context(), "m", nil); err != nil {
		t.Fatalf("load with a full queue: %v", err)
	}
	running.Release()
	next, err := m.Acquire(t.Context(), "m", nil)
	if err != nil {
		t.Fatalf("after a request ended: %v", err)
	}
	queued.Release()
	next.Release()
	next.Release() // a second Release is a no-op
	if s, _ := m.Status("m"); s.Requests != 0 || s.Refs != 0 {
		t.Fatalf("after every release: %+v", s)
	}

	unlimited := fakeCatalog(t, &enginetest.Engine{}, models.Options{KeepAlive: time.Hour})
	for range 100 {
		l, err := unlimited.Acquire(t.Context(), "m", nil)
		if err != nil {
			t.Fatalf("max_queue 0 is no limit: %v", err)
		}
		t.Cleanup(l.Release)
	}
}

func TestRequestsWaitingForALoadCountAndCancelledOnesLeave(t *testing.T) {
	eng := &enginetest.Engine{LoadGate: make(chan struct{})}
	m := fakeCatalog(t, eng, models.Options{KeepAlive: time.Hour, MaxQueue: 1})
	type result struct {
		lease *models.Lease
		err   error
	}
	acquire := func(ctx context.Context) <-chan result {
		out := make(chan result, 1)
		go func() {
			l, err := m.Acquire(ctx, "m", nil)
			out <- result{l, err}
		}()
		return out
	}
	first := acquire(t.Context())
	waitRequests(t, m, "m", 1)
	ctx, cancel := context.WithCancel(t.Context())
	second := acquire(ctx)
	waitRequests(t, m, "m", 2)
	if _, err := m.Acquire(t.Context(), "m", nil); !errors.Is(err, models.ErrBusy) {
		t.Fatalf("a third request while the model loads: %v, want ErrBusy", err)
	}

	cancel()
	if r := <-second; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled while waiting: %v", r.err)
	}
	waitRequests(t, m, "m", 1)
	third := acquire(t.Context()) // takes the place the cancelled one left
	waitRequests(t, m, "m", 2)
	close(eng.LoadGate)
	for _, ch := range []<-chan result{first, third} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("after the load: %v", r.err)
		}
		r.lease.Release()
	}
	if s, _ := m.Status("m"); s.Requests != 0 || s.State != models.StateLoaded {
		t.Fatalf("after every release: %+v", s)
	}
}

func TestRequestsStartAndEndReportChanges(t *testing.T) {
	var changes atomic.Int32
	m := fakeCatalog(t, &enginetest.Engine{}, models.Options{KeepAlive: time.Hour, OnChange: func() { changes.Add(1) }})
	if err := m.Load(t.Context(), "m", nil); err != nil {
		t.Fatal(err)
	}
	before := changes.Load()
	lease, err := m.Acquire(t.Context(), "m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if changes.Load() == before {
		t.Fatal("a request started without a change reported: peers would not see the slot taken")
	}
	if s, _ := m.Status("m"); s.Requests != 1 {
		t.Fatalf("requests %d, want 1", s.Requests)
	}
	before = changes.Load()
	lease.Release()
	if changes.Load() == before {
		t.Fatal("a request ended without a change reported")
	}
}

// TestModelsWithoutAnEngineAreUnavailable registers models whose engines this build lacks (an
// LLM engine it does not have, speech engines): they are listed unavailable at once, with a
// reason that names the engines there are.
func TestModelsWithoutAnEngineAreUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	var registry engine.Registry
	registry.RegisterLLM(&enginetest.Engine{})
	decls := []models.Decl{
		{Name: "llm", Modality: "llm", Engine: "vllm", Path: path, Enabled: true},
		{Name: "whisper", Modality: "stt", Engine: "faster_whisper", Path: path, Enabled: true},
		{Name: "served", Modality: "llm", Engine: engine.DefaultEngine, Path: path, Enabled: true},
	}
	m := models.New(&registry, decls, models.Options{KeepAlive: time.Hour})
	t.Cleanup(func() { m.Close() })
	for _, name := range []string{"llm", "whisper"} {
		st, _ := m.Status(name)
		if st.State != models.StateUnavailable || !strings.Contains(st.Reason, engine.DefaultEngine) {
			t.Errorf("%s: %v %q; want unavailable, naming the engine there is (%s)", name, st.State, st.Reason, engine.DefaultEngine)
		}
	}
	if st, _ := m.Status("served"); st.State == models.StateUnavailable {
		t.Errorf("served: unavailable: %s", st.Reason)
	}
}
