package logtail

import (
	"io"
	"log/slog"
	"strings"
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
