package capability

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// PeerEntry is what this node knows about one peer: its latest announcement and how the router
// has fared with it. Entries returned by a PeerTable are copies; the Capability is shared and
// must be treated as read-only.
type PeerEntry struct {
	// ID is the peer's libp2p identity.
	ID peer.ID
	// Capability is the peer's latest accepted announcement.
	Capability *pb.Capability
	// LastSeen is when that announcement arrived here (this node's clock).
	LastSeen time.Time
	// RecentFailures counts requests forwarded to the peer that failed since the last success.
	RecentFailures int
	// Connected is true while this host has a direct connection to the peer; gossip also
	// carries announcements of peers reachable only through others.
	Connected bool
}

// HasModel reports whether the entry announces the model name.
func (e PeerEntry) HasModel(name string) bool {
	return capabilityModelIndex(e.Capability, name) >= 0
}

// Model returns the entry's announcement of the model name, or nil.
func (e PeerEntry) Model(name string) *pb.ModelCapability {
	if i := capabilityModelIndex(e.Capability, name); i >= 0 {
		return e.Capability.GetModels()[i]
	}
	return nil
}

func capabilityModelIndex(c *pb.Capability, name string) int {
	return slices.IndexFunc(c.GetModels(), func(m *pb.ModelCapability) bool { return m.GetName() == name })
}

// PeerTable holds the latest Capability of every peer heard from, keyed by peer ID. It is safe
// for concurrent use. An Announcer fills and prunes it; the router reads it and records
// failures in it.
type PeerTable struct {
	mu      sync.Mutex
	entries map[peer.ID]*PeerEntry
	subs    map[chan struct{}]struct{}
}

// NewPeerTable returns an empty table.
func NewPeerTable() *PeerTable {
	return &PeerTable{
		entries: make(map[peer.ID]*PeerEntry),
		subs:    make(map[chan struct{}]struct{}),
	}
}

// Update stores c as id's announcement, seen at seen, unless the table already holds one with
// an equal or higher sequence. It reports whether the table changed. Failure counts
// survive the update.
func (t *PeerTable) Update(id peer.ID, c *pb.Capability, seen time.Time, connected bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[id]
	if ok && c.GetSequence() <= e.Capability.GetSequence() {
		return false
	}
	if !ok {
		e = &PeerEntry{ID: id}
		t.entries[id] = e
	}
	e.Capability = c
	e.LastSeen = seen
	e.Connected = connected
	t.notifyLocked()
	return true
}

// Peers returns every entry, sorted by peer ID.
func (t *PeerTable) Peers() []PeerEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PeerEntry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b PeerEntry) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Len returns the number of peers in the table.
func (t *PeerTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// Get returns the entry of id.
func (t *PeerTable) Get(id peer.ID) (PeerEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[id]
	if !ok {
		return PeerEntry{}, false
	}
	return *e, true
}

// WithModel returns the entries that announce the model name, sorted by peer ID.
func (t *PeerTable) WithModel(name string) []PeerEntry {
	peers := t.Peers()
	return slices.DeleteFunc(peers, func(e PeerEntry) bool { return !e.HasModel(name) })
}

// Remove drops the entry of id, if any.
func (t *PeerTable) Remove(id peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.entries[id]; ok {
		delete(t.entries, id)
		t.notifyLocked()
	}
}

// SetConnected records whether this host has a direct connection to id.
func (t *PeerTable) SetConnected(id peer.ID, connected bool) {
	t.modify(id, func(e *PeerEntry) { e.Connected = connected })
}

// RecordFailure counts one failed request forwarded to id.
func (t *PeerTable) RecordFailure(id peer.ID) {
	t.modify(id, func(e *PeerEntry) { e.RecentFailures++ })
}

// RecordSuccess clears id's failure count: the peer serves again.
func (t *PeerTable) RecordSuccess(id peer.ID) {
	t.modify(id, func(e *PeerEntry) { e.RecentFailures = 0 })
}

// modify applies f to id's entry; a peer not in the table is left out, since the router only
// talks to peers it found here.
func (t *PeerTable) modify(id peer.ID, f func(*PeerEntry)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[id]
	if !ok {
		return
	}
	before := *e
	f(e)
	if *e != before {
		t.notifyLocked()
	}
}

// Expire drops every entry last seen before deadline and returns their IDs.
func (t *PeerTable) Expire(deadline time.Time) []peer.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []peer.ID
	for id, e := range t.entries {
		if e.LastSeen.Before(deadline) {
			delete(t.entries, id)
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		t.notifyLocked()
	}
	return gone
}

// Subscribe returns a channel that receives a value after the table changes (coalesced: one
// pending value at most) and a function that ends the subscription and closes the channel.
func (t *PeerTable) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	t.mu.Lock()
	t.subs[ch] = struct{}{}
	t.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			t.mu.Lock()
			delete(t.subs, ch)
			t.mu.Unlock()
			close(ch)
		})
	}
}

func (t *PeerTable) notifyLocked() {
	for ch := range t.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
