// Package logtail keeps a node's most recent log records in memory, for the dashboard's logs tail
// (GET /api/logs): a slog.Handler wrapper copies each record the wrapped handler takes into a
// bounded ring and to whoever follows it.
package logtail

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"
)

// Size is how many records Recent keeps.
const Size = 500

// Recent is the process's log tail: cmd/syn4pse wraps its log handler with it, and the node
// serves it. A process has one log, so one tail.
var Recent = New(Size)

// Line is one log record as the tail keeps it.
type Line struct {
	// Seq numbers the records from 1, so a follower can tell what it has seen.
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	// Attrs are the record's attributes as slog's text handler writes them (key=value ...).
	Attrs string `json:"attrs"`
}

// Ring holds the last records logged through its handlers.
type Ring struct {
	mu      sync.Mutex
	lines   []Line // a ring of cap size; next is where the next record goes
	next    int
	seq     uint64
	buf     bytes.Buffer // the attributes' text, written by text handlers under mu
	follows map[chan Line]struct{}
}

// New returns a ring that keeps the last size records.
func New(size int) *Ring {
	return &Ring{lines: make([]Line, 0, size), follows: map[chan Line]struct{}{}}
}

// Wrap returns a handler that passes records to next and keeps those next takes.
func (r *Ring) Wrap(next slog.Handler) slog.Handler {
	return &handler{ring: r, next: next, text: slog.NewTextHandler(&r.buf, &slog.HandlerOptions{
		Level: slog.LevelDebug - 8, // next decides what is logged
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
				return slog.Attr{} // kept in Line's own fields
			}
			return a
		},
	})}
}

// Lines returns the records kept, oldest first.
func (r *Ring) Lines() []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Line, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}

// Follow returns the records kept and a channel of the ones logged after them, until stop is
// called. A follower that falls more than buffer records behind misses records (the logging
// never waits for it); Seq shows the gap.
func (r *Ring) Follow(buffer int) (kept []Line, lines <-chan Line, stop func()) {
	ch := make(chan Line, buffer)
	r.mu.Lock()
	kept = make([]Line, 0, len(r.lines))
	kept = append(append(kept, r.lines[r.next:]...), r.lines[:r.next]...)
	r.follows[ch] = struct{}{}
	r.mu.Unlock()
	return kept, ch, func() {
		r.mu.Lock()
		delete(r.follows, ch)
		r.mu.Unlock()
	}
}

// add keeps a record whose attributes are in r.buf; r.mu is held.
func (r *Ring) add(rec slog.Record) {
	r.seq++
	l := Line{Seq: r.seq, Time: rec.Time, Level: rec.Level.String(), Msg: rec.Message, Attrs: string(bytes.TrimSpace(r.buf.Bytes()))}
	r.buf.Reset()
	if len(r.lines) < cap(r.lines) {
		r.lines = append(r.lines, l)
	} else if cap(r.lines) > 0 {
		r.lines[r.next] = l
		r.next = (r.next + 1) % cap(r.lines)
	}
	for ch := range r.follows {
		select {
		case ch <- l:
		default:
		}
	}
}

type handler struct {
	ring *Ring
	next slog.Handler
	text slog.Handler // renders the attributes into ring.buf
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	err := h.next.Handle(ctx, rec)
	h.ring.mu.Lock()
	defer h.ring.mu.Unlock()
	h.ring.buf.Reset()
	if h.text.Handle(ctx, rec) == nil {
		h.ring.add(rec)
	}
	return err
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{ring: h.ring, next: h.next.WithAttrs(as), text: h.text.WithAttrs(as)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{ring: h.ring, next: h.next.WithGroup(name), text: h.text.WithGroup(name)}
}
