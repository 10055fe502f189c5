package router

import (
	"log/slog"
	"sync"
	"time"
)

// Bans leaves out, for a while, the peers that keep failing. After a run of consecutive faults
// (requests forwarded to the peer that failed on its side, blob transfers from it that failed)
// the peer is banned: neither the router nor the puller chooses it until the ban ends. A
// success resets the run; a busy answer (RESOURCE_EXHAUSTED, a blob server at its per-peer
// limit) counts neither way, since the peer is healthy and protecting itself.
//
// Bans outlive the peer table's entries, so a peer that drops off the mesh and rejoins stays
// banned. A nil *Bans bans nobody. It is safe for concurrent use.
type Bans struct {
	after    int
	duration time.Duration
	now      func() time.Time // tests move the clock
	log      *slog.Logger

	mu    sync.Mutex
	peers map[string]*banRecord // peers with a fault since their last success
}

// banRecord is one peer's run of faults and, when banned, the end of its ban.
type banRecord struct {
	faults int
	until  time.Time // zero while not banned
}

// NewBans bans a peer for duration after after consecutive faults; after <= 0 or duration <= 0
// bans nobody (faults are still logged by their callers).
func NewBans(after int, duration time.Duration) *Bans {
	return &Bans{after: after, duration: duration, now: time.Now, log: slog.Default().With("component", "router"),
		peers: make(map[string]*banRecord)}
}

// Fault counts one fault of peer; the one that completes a run of after bans it. why is logged
// with the ban.
func (b *Bans) Fault(peer string, why error) {
	if b == nil || b.after <= 0 || b.duration <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	r := b.peers[peer]
	if r == nil {
		r = &banRecord{}
		b.peers[peer] = r
	}
	if !r.until.IsZero() {
		return // already banned: a call that started before the ban
	}
	r.faults++
	if r.faults >= b.after {
		r.until = now.Add(b.duration)
		b.log.Warn("peer banned: it failed too often in a row", "peer", peer, "failures", r.faults,
			"for", b.duration, "last_err", why)
	}
}

// Success resets peer's run of faults. A banned peer stays banned: nothing is sent to it, so a
// success can only come from a call that started before the ban.
func (b *Bans) Success(peer string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.peers[peer]; r != nil && r.until.IsZero() {
		delete(b.peers, peer)
	}
}

// Banned reports whether peer is banned now. A ban found over is lifted (and logged): the peer
// starts again with no faults.
func (b *Bans) Banned(peer string) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.peers[peer]
	if r == nil || r.until.IsZero() {
		return false
	}
	if b.now().Before(r.until) {
		return true
	}
	delete(b.peers, peer)
	b.log.Info("peer ban ended", "peer", peer)
	return false
}
