package capability

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pping "github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"google.golang.org/protobuf/proto"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// gossipTestNode is one in-process mesh member: a real libp2p host on loopback, its GossipSub
// and, once started, its Announcer announcing the models set with setModels.
type gossipTestNode struct {
	host host.Host
	ps   *pubsub.PubSub
	ann  *Announcer
	log  *gossipTestLog

	mu     sync.Mutex
	models []string
}

func (n *gossipTestNode) setModels(names ...string) {
	n.mu.Lock()
	n.models = names
	n.mu.Unlock()
}

func (n *gossipTestNode) capability() *pb.Capability {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := &pb.Capability{NodeName: "node-" + n.host.ID().ShortString(), Version: "test"}
	for _, m := range n.models {
		c.Models = append(c.Models, &pb.ModelCapability{Name: m, Loaded: true, FreeSlots: 1})
	}
	return c
}

// newGossipTestHosts starts n hosts with GossipSub, not connected and not announcing. Queues are
// raised as FIELD-NOTES says is needed beyond a few dozen hosts in one process.
func newGossipTestHosts(tb testing.TB, n int) []*gossipTestNode {
	tb.Helper()
	// Registered first so it runs last: announcers and hosts close while pubsub still runs.
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	nodes := make([]*gossipTestNode, n)
	for i := range nodes {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = h.Close() })
		ps, err := pubsub.NewGossipSub(ctx, h,
			pubsub.WithPeerOutboundQueueSize(1024),
			pubsub.WithValidateQueueSize(1024),
		)
		if err != nil {
			tb.Fatal(err)
		}
		nodes[i] = &gossipTestNode{host: h, ps: ps, log: &gossipTestLog{counts: map[string]int{}}}
		nodes[i].setModels("model-" + h.ID().ShortString())
	}
	return nodes
}

// startGossipTestAnnouncers starts an Announcer on every node, closed at cleanup.
func startGossipTestAnnouncers(tb testing.TB, nodes []*gossipTestNode, opts AnnouncerOptions) {
	tb.Helper()
	for _, n := range nodes {
		o := opts
		o.Logger = slog.New(n.log)
		a, err := NewAnnouncer(n.host, n.ps, n.capability, o)
		if err != nil {
			tb.Fatal(err)
		}
		n.ann = a
		tb.Cleanup(func() {
			if err := a.Close(); err != nil {
				tb.Errorf("close announcer: %v", err)
			}
		})
	}
}

// connectGossipTestHosts dials b from a on loopback, with a timeout as FIELD-NOTES advises.
func connectGossipTestHosts(tb testing.TB, a, b host.Host) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		tb.Fatalf("connect %s -> %s: %v", a.ID(), b.ID(), err)
	}
}

// waitGossipTest polls cond until it holds or timeout passes, and reports whether it held.
func waitGossipTest(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// gossipTestModels returns the model names an entry announces.
func gossipTestModels(e PeerEntry) []string {
	var names []string
	for _, m := range e.Capability.GetModels() {
		names = append(names, m.GetName())
	}
	return names
}

// gossipTestSees reports whether observer's table holds subject announcing exactly models.
func gossipTestSees(observer, subject *gossipTestNode, models ...string) bool {
	e, ok := observer.ann.Table().Get(subject.host.ID())
	return ok && slices.Equal(gossipTestModels(e), models)
}

// gossipTestLog is a slog.Handler that counts records by message and reason, so tests can tell
// that the validator saw a message rather than that the message got lost.
type gossipTestLog struct {
	mu     sync.Mutex
	counts map[string]int
}

func (l *gossipTestLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *gossipTestLog) Handle(_ context.Context, r slog.Record) error {
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "reason" {
			key += ": " + a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	l.counts[key]++
	l.mu.Unlock()
	return nil
}

func (l *gossipTestLog) WithAttrs([]slog.Attr) slog.Handler { return l }

func (l *gossipTestLog) WithGroup(string) slog.Handler { return l }

func (l *gossipTestLog) count(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[key]
}

func TestCapabilityThreeHosts(t *testing.T) {
	nodes := newGossipTestHosts(t, 3)
	// A long interval: what arrives quickly arrives through Changed and topic joins.
	startGossipTestAnnouncers(t, nodes, AnnouncerOptions{Interval: 20 * time.Second})
	connectGossipTestHosts(t, nodes[0].host, nodes[1].host)
	connectGossipTestHosts(t, nodes[1].host, nodes[2].host)
	connectGossipTestHosts(t, nodes[0].host, nodes[2].host)

	start := time.Now()
	allSeen := func() bool {
		for _, o := range nodes {
			for _, s := range nodes {
				if o != s && !gossipTestSees(o, s, s.capability().Models[0].Name) {
					return false
				}
			}
		}
		return true
	}
	if !waitGossipTest(60*time.Second, allSeen) {
		t.Fatal("tables did not converge within 60s")
	}
	t.Logf("three hosts converged in %v", time.Since(start))
	for _, o := range nodes {
		peers := o.ann.Table().Peers()
		if len(peers) != 2 {
			t.Errorf("%s sees %d peers, want 2", o.host.ID(), len(peers))
		}
		for _, e := range peers {
			c := e.Capability
			if c.GetPeerId() != e.ID.String() || c.GetSequence() < uint64(start.Add(-time.Minute).UnixNano()) ||
				c.GetTimestampUnixMs() == 0 || !e.Connected || e.LastSeen.IsZero() {
				t.Errorf("%s's entry of %s: %+v", o.host.ID(), e.ID, e)
			}
		}
	}

	before, _ := nodes[1].ann.Table().Get(nodes[0].host.ID())
	nodes[0].setModels("llama-3b", "bert-small")
	for range 10 { // a burst coalesces
		nodes[0].ann.Changed()
	}
	start = time.Now()
	changed := func() bool {
		return gossipTestSees(nodes[1], nodes[0], "llama-3b", "bert-small") &&
			gossipTestSees(nodes[2], nodes[0], "llama-3b", "bert-small")
	}
	if !waitGossipTest(10*time.Second, changed) {
		t.Fatal("Changed() did not propagate within 10s")
	}
	t.Logf("Changed() propagated in %v", time.Since(start))
	after, _ := nodes[1].ann.Table().Get(nodes[0].host.ID())
	if after.Capability.GetSequence() <= before.Capability.GetSequence() {
		t.Errorf("sequence went from %d to %d", before.Capability.GetSequence(), after.Capability.GetSequence())
	}
	if got := nodes[1].ann.Table().WithModel("bert-small"); len(got) != 1 || got[0].ID != nodes[0].host.ID() {
		t.Errorf("WithModel(bert-small) = %v", got)
	}
}

func TestCapabilityTTLExpiry(t *testing.T) {
	nodes := newGossipTestHosts(t, 3)
	startGossipTestAnnouncers(t, nodes, AnnouncerOptions{Interval: 200 * time.Millisecond, TTL: time.Second})
	connectGossipTestHosts(t, nodes[0].host, nodes[1].host)
	connectGossipTestHosts(t, nodes[1].host, nodes[2].host)
	connectGossipTestHosts(t, nodes[0].host, nodes[2].host)
	full := func() bool { return nodes[0].ann.Table().Len() == 2 && nodes[1].ann.Table().Len() == 2 }
	if !waitGossipTest(60*time.Second, full) {
		t.Fatal("tables did not converge")
	}

	silent := nodes[2]
	if err := silent.ann.Close(); err != nil { // host stays up and connected
		t.Fatal(err)
	}
	start := time.Now()
	gone := func() bool {
		_, in0 := nodes[0].ann.Table().Get(silent.host.ID())
		_, in1 := nodes[1].ann.Table().Get(silent.host.ID())
		return !in0 && !in1
	}
	if !waitGossipTest(10*time.Second, gone) {
		t.Fatal("silent peer still in the tables 10s after it stopped (TTL 1s)")
	}
	t.Logf("silent peer left the tables %v after its last chance to announce (TTL 1s)", time.Since(start))
	if !gossipTestSees(nodes[0], nodes[1], nodes[1].capability().Models[0].Name) {
		t.Errorf("an announcing peer left the table too")
	}
}

func TestCapabilityDisconnect(t *testing.T) {
	nodes := newGossipTestHosts(t, 3)
	// TTL far above what the test waits: removals seen here come from connection events.
	startGossipTestAnnouncers(t, nodes, AnnouncerOptions{Interval: 200 * time.Millisecond, TTL: time.Minute})
	a, b, c := nodes[0], nodes[1], nodes[2]
	connectGossipTestHosts(t, a.host, b.host)
	connectGossipTestHosts(t, a.host, c.host)
	// B and C hear of each other through A.
	full := func() bool { return a.ann.Table().Len() == 2 && b.ann.Table().Len() == 2 && c.ann.Table().Len() == 2 }
	if !waitGossipTest(60*time.Second, full) {
		t.Fatal("tables did not converge")
	}
	if e, _ := b.ann.Table().Get(c.host.ID()); e.Connected {
		t.Errorf("B's entry of C says connected; they only share A")
	}

	// A dropped connection removes the peer; reconnecting and announcing brings it back.
	if err := a.host.Network().ClosePeer(b.host.ID()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !waitGossipTest(5*time.Second, func() bool { _, ok := a.ann.Table().Get(b.host.ID()); return !ok }) {
		t.Fatal("disconnected peer still in the table")
	}
	t.Logf("disconnected peer removed in %v", time.Since(start))
	connectGossipTestHosts(t, a.host, b.host)
	if !waitGossipTest(30*time.Second, func() bool {
		e, ok := a.ann.Table().Get(b.host.ID())
		return ok && e.Connected
	}) {
		t.Fatal("reconnected peer did not come back")
	}

	// A closed host leaves at once, long before the TTL.
	if err := c.host.Close(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if !waitGossipTest(5*time.Second, func() bool { _, ok := a.ann.Table().Get(c.host.ID()); return !ok }) {
		t.Fatal("closed host still in the table")
	}
	t.Logf("closed host removed in %v", time.Since(start))
	if _, ok := a.ann.Table().Get(b.host.ID()); !ok {
		t.Errorf("live peer removed with the closed one")
	}
}

func TestCapabilityValidator(t *testing.T) {
	nodes := newGossipTestHosts(t, 1)
	startGossipTestAnnouncers(t, nodes, AnnouncerOptions{MaxSize: 1024})
	a := nodes[0].ann
	if second, err := NewAnnouncer(nodes[0].host, nodes[0].ps, nodes[0].capability, AnnouncerOptions{}); err == nil {
		_ = second.Close()
		t.Fatal("a second Announcer on one PubSub started")
	}
	self, author, relay := nodes[0].host.ID(), newPeerTableTestID(t), newPeerTableTestID(t)
	now := time.Now()
	capability := func(id peer.ID, seq uint64, stamped time.Time) []byte {
		c := peerTableTestCapability(id, seq, "m")
		c.TimestampUnixMs = stamped.UnixMilli()
		data, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	// Short link peer IDs keep MaxLinks+1 links under MaxSize, so the bound, not the size, refuses.
	linked := func(id peer.ID, seq uint64, stamped time.Time, n int, rttMs float64) []byte {
		c := peerTableTestCapability(id, seq, "m")
		c.TimestampUnixMs = stamped.UnixMilli()
		for i := range n {
			c.Links = append(c.Links, &pb.PeerLink{PeerId: fmt.Sprint(i), RttMs: rttMs})
		}
		data, err := proto.Marshal(c)
		if err != nil || len(data) > 1024 {
			t.Fatalf("%d links: %d bytes, %v", n, len(data), err)
		}
		return data
	}
	big := &pb.Capability{PeerId: author.String(), Sequence: 1, NodeName: strings.Repeat("x", 2048)}
	oversize, _ := proto.Marshal(big)

	tests := []struct { // in order: the replay cases depend on the sequences accepted before
		name      string
		from      peer.ID // the peer that passed the message on
		author    peer.ID // the signed From field
		carrier   string  // the signed pubsub seqno: one per message of an author
		data      []byte
		want      pubsub.ValidationResult
		wantCache bool
	}{
		{"own publish", self, self, "s1", []byte("anything"), pubsub.ValidationAccept, false},
		{"own announcement echoed", relay, self, "s2", capability(self, 5, now), pubsub.ValidationIgnore, false},
		{"garbage", relay, author, "g", []byte{0x07, 0xff, 0x00}, pubsub.ValidationReject, false},
		{"oversize", relay, author, "o", oversize, pubsub.ValidationReject, false},
		{"spoofed peer_id", relay, author, "p1", capability(relay, 5, now), pubsub.ValidationReject, false},
		{"no peer_id", relay, author, "p2", capability("", 5, now), pubsub.ValidationReject, false},
		{"no sequence", relay, author, "n", capability(author, 0, now), pubsub.ValidationReject, false},
		{"dated in the future", relay, author, "f", capability(author, 5, now.Add(time.Hour)), pubsub.ValidationReject, false},
		{"dated long ago", relay, author, "l1", capability(author, 5, now.Add(-2*time.Hour)), pubsub.ValidationReject, false},
		{"just too old", relay, author, "l2", capability(author, 5, now.Add(-maxAnnounceAge-time.Minute)), pubsub.ValidationIgnore, false},
		{"valid", relay, author, "a1", capability(author, 100, now), pubsub.ValidationAccept, true},
		{"valid from its author", author, author, "a2", capability(author, 101, now), pubsub.ValidationAccept, true},
		// A relay may deliver late, or have seen another message first: never its fault.
		{"replayed sequence", relay, author, "a3", capability(author, 101, now), pubsub.ValidationIgnore, false},
		{"older sequence", relay, author, "a4", capability(author, 50, now), pubsub.ValidationIgnore, false},
		// The author signing a sequence it announced in another message is.
		{"replayed sequence from its author", author, author, "a5", capability(author, 101, now), pubsub.ValidationReject, false},
		{"older sequence from its author, seen", author, author, "a6", capability(author, 100, now), pubsub.ValidationReject, false},
		// An older sequence never seen may be a late delivery; the same message is a duplicate.
		{"older sequence from its author, unseen", author, author, "a7", capability(author, 99, now), pubsub.ValidationIgnore, false},
		{"same message again", author, author, "a2", capability(author, 101, now), pubsub.ValidationIgnore, false},
		{"newer sequence", relay, author, "a8", capability(author, 102, now.Add(time.Minute)), pubsub.ValidationAccept, true},
		// Links: at most MaxLinks, each with a round trip that is a duration.
		{"links at the bound", relay, author, "k1", linked(author, 103, now, MaxLinks, 0), pubsub.ValidationAccept, true},
		{"too many links", relay, author, "k2", linked(author, 104, now, MaxLinks+1, 0), pubsub.ValidationReject, false},
		{"negative link round trip", relay, author, "k3", linked(author, 105, now, 1, -1), pubsub.ValidationReject, false},
		{"link round trip not a number", relay, author, "k4", linked(author, 106, now, 1, math.NaN()), pubsub.ValidationReject, false},
		{"measured link round trip", relay, author, "k5", linked(author, 107, now, 2, 1.5), pubsub.ValidationAccept, true},
	}
	for _, tt := range tests {
		msg := &pubsub.Message{Message: &pubsubpb.Message{Data: tt.data, From: []byte(tt.author), Seqno: []byte(tt.carrier)}, ReceivedFrom: tt.from}
		if got := a.validate(t.Context(), tt.from, msg); got != tt.want {
			t.Errorf("%s: validate = %v, want %v", tt.name, got, tt.want)
		}
		if _, cached := msg.ValidatorData.(validatedCapability); cached != tt.wantCache {
			t.Errorf("%s: capability in ValidatorData = %v, want %v", tt.name, cached, tt.wantCache)
		}
	}
}

// TestCapabilityHostile runs a hostile member (H, no validator of its own) beside two honest
// nodes: what it publishes must not change their tables, and must be seen and refused.
func TestCapabilityHostile(t *testing.T) {
	nodes := newGossipTestHosts(t, 3)
	a, b, h := nodes[0], nodes[1], nodes[2]
	startGossipTestAnnouncers(t, nodes[:2], AnnouncerOptions{Interval: 200 * time.Millisecond})
	raw, err := h.ps.Join(Topic)
	if err != nil {
		t.Fatal(err)
	}
	stopRelay, err := raw.Relay()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopRelay(); _ = raw.Close() })
	connectGossipTestHosts(t, a.host, b.host)
	connectGossipTestHosts(t, h.host, a.host)
	connectGossipTestHosts(t, h.host, b.host)
	honest := func() bool {
		return gossipTestSees(a, b, b.capability().Models[0].Name) && gossipTestSees(b, a, a.capability().Models[0].Name) &&
			a.ann.Table().Len() == 1 && b.ann.Table().Len() == 1
	}
	ready := func() bool { return honest() && len(raw.ListPeers()) == 2 }
	if !waitGossipTest(60*time.Second, ready) {
		t.Fatal("mesh did not form")
	}

	bKey := b.host.Peerstore().PrivKey(b.host.ID())
	hostileCapability := func(id peer.ID, seq uint64, stamped time.Time, name string) []byte {
		c := peerTableTestCapability(id, seq, "evil")
		c.TimestampUnixMs, c.NodeName = stamped.UnixMilli(), name
		data, _ := proto.Marshal(c)
		return data
	}
	tests := []struct {
		name    string
		data    func() []byte
		opts    []pubsub.PubOpt
		wantLog string
		seenBy  []*gossipTestNode
	}{
		{"garbage", func() []byte { return []byte{0x07, 0xff, 0xff} }, nil,
			"announcement rejected: malformed", []*gossipTestNode{a, b}},
		{"spoofed peer_id", func() []byte { return hostileCapability(b.host.ID(), uint64(time.Now().UnixNano()), time.Now(), "") }, nil,
			"announcement rejected: peer_id is not the signer", []*gossipTestNode{a, b}},
		{"future", func() []byte { return hostileCapability(h.host.ID(), 1, time.Now().Add(time.Hour), "") }, nil,
			"announcement rejected: dated in the future", []*gossipTestNode{a, b}},
		{"oversize", func() []byte { return hostileCapability(h.host.ID(), 1, time.Now(), strings.Repeat("x", 100<<10)) }, nil,
			"announcement rejected: oversize", []*gossipTestNode{a, b}},
		// B's own key signing an old sequence: a replay that outlived pubsub's seen-cache.
		{"replayed sequence", func() []byte { return hostileCapability(b.host.ID(), 1, time.Now(), "") },
			[]pubsub.PubOpt{pubsub.WithSecretKeyAndPeerId(bKey, b.host.ID())},
			"announcement ignored: sequence not newer", []*gossipTestNode{a}},
	}
	for _, tt := range tests {
		before := make([]int, len(tt.seenBy))
		for i, n := range tt.seenBy {
			before[i] = n.log.count(tt.wantLog)
		}
		seen := func() bool {
			for i, n := range tt.seenBy {
				if n.log.count(tt.wantLog) == before[i] {
					return false
				}
			}
			return true
		}
		// Republish until seen: a message may be lost, the refusal must be observed.
		for deadline := time.Now().Add(20 * time.Second); !seen(); {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not refused by the honest nodes within 20s", tt.name)
			}
			if err := raw.Publish(t.Context(), tt.data(), tt.opts...); err != nil {
				t.Fatalf("%s: publish: %v", tt.name, err)
			}
			waitGossipTest(200*time.Millisecond, seen)
		}
		if !honest() {
			t.Fatalf("%s: honest tables changed: A %v, B %v", tt.name, a.ann.Table().Peers(), b.ann.Table().Peers())
		}
	}

	malformed, spoofed := a.log.count("announcement rejected: malformed"), a.log.count("announcement rejected: peer_id is not the signer")
	floodStart := time.Now()
	for i := range 500 {
		data := []byte{0x07, byte(i)}
		if i%2 == 0 {
			data = hostileCapability(a.host.ID(), uint64(time.Now().UnixNano()), time.Now(), "")
		}
		if err := raw.Publish(t.Context(), data); err != nil {
			t.Fatalf("flood publish %d: %v", i, err)
		}
	}
	t.Logf("flood of 500 published in %v; A refused %d malformed, %d spoofed", time.Since(floodStart),
		a.log.count("announcement rejected: malformed")-malformed, a.log.count("announcement rejected: peer_id is not the signer")-spoofed)
	// The honest nodes keep hearing each other after the flood.
	fresh := func() bool {
		ea, _ := a.ann.Table().Get(b.host.ID())
		eb, _ := b.ann.Table().Get(a.host.ID())
		return honest() && ea.LastSeen.After(floodStart) && eb.LastSeen.After(floodStart)
	}
	if !waitGossipTest(10*time.Second, fresh) {
		t.Fatalf("honest peers stopped hearing each other after the flood: A %v, B %v", a.ann.Table().Peers(), b.ann.Table().Peers())
	}
}

// TestCapabilityCloseStopsGoroutines checks that Close waits for everything NewAnnouncer started.
func TestCapabilityCloseStopsGoroutines(t *testing.T) {
	nodes := newGossipTestHosts(t, 1)
	time.Sleep(200 * time.Millisecond) // let the host's own goroutines settle
	before := runtime.NumGoroutine()
	for range 5 {
		a, err := NewAnnouncer(nodes[0].host, nodes[0].ps, nodes[0].capability, AnnouncerOptions{Interval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		a.Changed()
		time.Sleep(30 * time.Millisecond)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
	}
	if !waitGossipTest(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
		t.Errorf("goroutines: %d before, %d after five announcers came and went", before, runtime.NumGoroutine())
	}
}

// TestFirstSequence: an announcer starts from FirstSequence when it is past the clock (a clock
// stepped back since the node's last run), and its peers take those announcements.
func TestFirstSequence(t *testing.T) {
	nodes := newGossipTestHosts(t, 2)
	first := uint64(time.Now().Add(24 * time.Hour).UnixNano())
	startGossipTestAnnouncers(t, nodes, AnnouncerOptions{Interval: time.Second, FirstSequence: first})
	connectGossipTestHosts(t, nodes[0].host, nodes[1].host)
	if !waitGossipTest(60*time.Second, func() bool { return gossipTestSees(nodes[1], nodes[0], nodes[0].capability().Models[0].Name) }) {
		t.Fatal("the peer never took the announcements")
	}
	e, _ := nodes[1].ann.Table().Get(nodes[0].host.ID())
	if seq := e.Capability.GetSequence(); seq <= first {
		t.Fatalf("sequence %d, want past FirstSequence %d", seq, first)
	}
}

// gossipTestLinks returns the peer IDs of the links in observer's entry of subject, and whether
// every link carries a round trip that is a duration (finite, not negative).
func gossipTestLinks(observer, subject *gossipTestNode) ([]string, bool) {
	e, ok := observer.ann.Table().Get(subject.host.ID())
	if !ok {
		return nil, false
	}
	var ids []string
	for _, l := range e.Capability.GetLinks() {
		if l.GetRttMs() < 0 || math.IsNaN(l.GetRttMs()) || math.IsInf(l.GetRttMs(), 0) {
			return ids, false
		}
		ids = append(ids, l.GetPeerId())
	}
	return ids, true
}

// sortedIDs returns the string forms of the hosts' IDs, sorted as links are.
func sortedIDs(nodes ...*gossipTestNode) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.host.ID().String())
	}
	slices.Sort(ids)
	return ids
}

// TestCapabilityLinks: an announcement carries the mesh peers its node is connected to, with
// the round trip its peerstore measured, so a node learns of connections it is not part of; a
// connection to a host outside the mesh is no link, and a link goes when its peer does.
func TestCapabilityLinks(t *testing.T) {
	nodes := newGossipTestHosts(t, 3)
	startGossipTestAnnouncers(t, nodes, AnnouncerOptions{Interval: 200 * time.Millisecond, TTL: time.Minute})
	a, b, c := nodes[0], nodes[1], nodes[2]
	connectGossipTestHosts(t, a.host, b.host)
	connectGossipTestHosts(t, b.host, c.host) // a and c are not connected: a learns of b-c from b
	// A real ping measures a's round trip to b into a's peerstore, where links take it from.
	ping := <-libp2pping.Ping(t.Context(), a.host, b.host.ID())
	if ping.Error != nil {
		t.Fatal(ping.Error)
	}
	measured := func() bool {
		e, ok := b.ann.Table().Get(a.host.ID())
		links := e.Capability.GetLinks()
		return ok && len(links) == 1 && links[0].GetPeerId() == b.host.ID().String() && links[0].GetRttMs() > 0
	}
	if !waitGossipTest(30*time.Second, measured) {
		t.Fatalf("b's entry of a does not list the a-b link with the measured round trip (%v)", ping.RTT)
	}
	e, _ := b.ann.Table().Get(a.host.ID())
	t.Logf("a's link to b: %.3f ms (one ping measured %v)", e.Capability.GetLinks()[0].GetRttMs(), ping.RTT)
	whole := func() bool {
		ofB, okB := gossipTestLinks(a, b)
		ofC, okC := gossipTestLinks(a, c)
		return okB && okC && slices.Equal(ofB, sortedIDs(a, c)) && slices.Equal(ofC, sortedIDs(b))
	}
	if !waitGossipTest(30*time.Second, whole) {
		ofB, _ := gossipTestLinks(a, b)
		ofC, _ := gossipTestLinks(a, c)
		t.Fatalf("a's view of the links: b %v, c %v; want b to a and c, c to b", ofB, ofC)
	}

	// A host outside the mesh (no announcer: a DHT or relay peer, say) connected to a is no link.
	outsider, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = outsider.Close() })
	if err := a.host.Connect(t.Context(), peer.AddrInfo{ID: outsider.ID(), Addrs: outsider.Addrs()}); err != nil {
		t.Fatal(err)
	}
	since := time.Now().UnixMilli()
	later := func() bool {
		e, ok := b.ann.Table().Get(a.host.ID())
		return ok && e.Capability.GetTimestampUnixMs() > since
	}
	if !waitGossipTest(30*time.Second, later) {
		t.Fatal("no announcement of a after the outsider connected")
	}
	if got, _ := gossipTestLinks(b, a); !slices.Equal(got, sortedIDs(b)) {
		t.Errorf("a's links with an outsider connected: %v, want only b", got)
	}

	// c leaves: b's next announcements no longer carry the b-c link.
	if err := c.host.Close(); err != nil {
		t.Fatal(err)
	}
	gone := func() bool {
		got, ok := gossipTestLinks(a, b)
		return ok && slices.Equal(got, sortedIDs(a))
	}
	if !waitGossipTest(30*time.Second, gone) {
		got, _ := gossipTestLinks(a, b)
		t.Fatalf("b's links after c left: %v, want only a", got)
	}
}
