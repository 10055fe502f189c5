package store

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pull statuses, in the order a pull goes through them.
const (
	StatusResolving   = "resolving"
	StatusDownloading = "downloading"
	StatusVerifying   = "verifying"
	StatusDone        = "done"
)

// Progress is reported while pulling.
type Progress struct {
	// Status is one of StatusResolving, StatusDownloading, StatusVerifying, StatusDone.
	Status string
	// Completed counts the bytes of the file on disk, those an earlier attempt left included;
	// Total is the file's size, 0 while unknown.
	Completed, Total int64
	// BytesPerSecond is the download speed over the last couple of seconds.
	BytesPerSecond float64
	// Digest is "sha256:<hex>" once known.
	Digest string
	// From is where the bytes come from: a URL.
	From string
}

const (
	progressInterval = 250 * time.Millisecond
	speedWindow      = 2 * time.Second
)

// reporter calls a progress callback on every status change and every progressInterval
// between, from one goroutine at a time and never after close returns.
type reporter struct {
	fn        func(Progress)
	completed atomic.Int64 // the download loop's only touch: no lock on the hot path

	mu       sync.Mutex // guards the fields below and serializes calls to fn
	state    Progress
	samples  []sample
	finished bool

	stop chan struct{}
	wg   sync.WaitGroup
}

type sample struct {
	at        time.Time
	completed int64
}

// newReporter starts the ticker that reports between status changes; a nil fn reports
// nothing.
func newReporter(fn func(Progress), from string) *reporter {
	r := &reporter{fn: fn, state: Progress{From: from}, stop: make(chan struct{})}
	if fn == nil {
		return r
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.emit("")
			}
		}
	}()
	return r
}

// close stops the ticker and waits for it.
func (r *reporter) close() {
	close(r.stop)
	r.wg.Wait()
}

// add counts n more bytes on disk.
func (r *reporter) add(n int) { r.completed.Add(int64(n)) }

// setCompleted restarts the count at n (a resumed or restarted file); speed starts over.
func (r *reporter) setCompleted(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.completed.Store(n)
	r.samples = r.samples[:0]
}

// set changes what the next report says beyond the byte count.
func (r *reporter) set(total int64, digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if total > 0 {
		r.state.Total = total
	}
	if digest != "" {
		r.state.Digest = digest
	}
}

// emit reports now, with a new status (or "" to keep the current one).
func (r *reporter) emit(status string) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished || (status == "" && r.state.Status == "") {
		return
	}
	if status != "" {
		r.state.Status = status
	}
	now := time.Now()
	r.state.Completed = r.completed.Load()
	r.state.BytesPerSecond = r.speed(now, r.state.Completed)
	if r.state.Status == StatusDone {
		r.finished = true
		r.state.BytesPerSecond = 0
	}
	r.fn(r.state)
}

// speed returns bytes per second over the samples of the last speedWindow, adding this one.
func (r *reporter) speed(now time.Time, completed int64) float64 {
	r.samples = append(r.samples, sample{now, completed})
	drop := 0
	for drop < len(r.samples)-2 && now.Sub(r.samples[drop+1].at) >= speedWindow {
		drop++
	}
	r.samples = r.samples[drop:]
	oldest := r.samples[0]
	elapsed := now.Sub(oldest.at).Seconds()
	if elapsed < 0.05 || completed < oldest.completed {
		return 0
	}
	return float64(completed-oldest.completed) / elapsed
}
