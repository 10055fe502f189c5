package logtail

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestRing: the ring keeps the last records the wrapped handler takes, in order, with their
// attributes and groups, and a follower gets the ones logged after it started.
func TestRing(t *testing.T) {
	r := New(3)
	log := slog.New(r.Wrap(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	log.Debug("not taken by the wrapped handler")
	for i := range 5 {
		log.With("node", "a").WithGroup("req").Info("served", "n", i)
	}
	lines := r.Lines()
	if len(lines) != 3 || lines[0].Seq != 3 || lines[2].Seq != 5 {
		t.Fatalf("kept %+v, want records 3 to 5", lines)
	}
	if l := lines[2]; l.Msg != "served" || l.Level != "INFO" || l.Attrs != "node=a req.n=4" || l.Time.IsZero() {
		t.Errorf("last line %+v", l)
	}
	kept, ch, stop := r.Follow(4)
	defer stop()
	if len(kept) != 3 {
		t.Errorf("follow: %d kept, want 3", len(kept))
	}
	log.Warn("after", "x", "y z")
	if l := <-ch; l.Seq != 6 || l.Level != "WARN" || !strings.Contains(l.Attrs, `x="y z"`) {
		t.Errorf("followed %+v", l)
	}
}

// TestRingConcurrent: records logged from many goroutines are all numbered once, and the ring
// keeps the last ones whole.
func TestRingConcurrent(t *testing.T) {
	r := New(50)
	log := slog.New(r.Wrap(slog.NewTextHandler(io.Discard, nil)))
	_, ch, stop := r.Follow(1000)
	defer stop()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				log.Info("m", "g", g, "i", i)
			}
		})
	}
	wg.Wait()
	if got := len(ch); got != 800 {
		t.Errorf("follower got %d records, want 800", got)
	}
	lines := r.Lines()
	if len(lines) != 50 || lines[49].Seq != 800 || lines[0].Seq != 751 {
		t.Fatalf("kept %d lines, seq %d to %d; want 751 to 800", len(lines), lines[0].Seq, lines[len(lines)-1].Seq)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l.Attrs, "g=") || !strings.Contains(l.Attrs, " i=") {
			t.Fatalf("line %+v", l)
		}
	}
}
