package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ekisa-team/syn4pse/p2p/capability"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// scoreTestNode is an honest member: a Host with the node's topic scores and an Announcer.
type scoreTestNode struct {
	host *Host
	ann  *capability.Announcer
}

func startScoreTestNode(t *testing.T, key *SwarmKey) scoreTestNode {
	t.Helper()
	h := startTestHost(t, Config{SwarmKey: key, Name: "honest",
		// The production parameters, for the production interval: the announcer below runs
		// faster only so that the test does.
		TopicScores: map[string]*pubsub.TopicScoreParams{capability.Topic: capability.ScoreParams(3 * time.Second)}})
	self := func() *pb.Capability {
		return &pb.Capability{NodeName: "honest", Models: []*pb.ModelCapability{{Name: "m-" + h.ID().ShortString(), Loaded: true}}}
	}
	a, err := capability.NewAnnouncer(h.Libp2p(), h.PubSub(), self, capability.AnnouncerOptions{Interval: 200 * time.Millisecond, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return scoreTestNode{host: h, ann: a}
}

// hostileScoreTestHost is a mesh member that holds the swarm key but runs plain GossipSub with
// no validator and no scoring: it publishes whatever the test gives it, signed with its own
// key, to every peer of the topic.
type hostileScoreTestHost struct {
	host  host.Host
	topic *pubsub.Topic
	seq   uint64
}

func startHostileScoreTestHost(t *testing.T, key *SwarmKey) *hostileScoreTestHost {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // registered first, so it runs after the host closes
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.PrivateNetwork(key[:]), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	// Flood publishing sends its messages to every topic peer, in the mesh or not: what a
	// hostile peer does to keep reaching nodes that pruned it.
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(capability.Topic)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := topic.Relay()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return &hostileScoreTestHost{host: h, topic: topic, seq: uint64(time.Now().UnixNano())}
}

// announcement is a capability of id stamped at stamped with sequence seq.
func (h *hostileScoreTestHost) announcement(t *testing.T, id peer.ID, seq uint64, stamped time.Time) []byte {
	t.Helper()
	data, err := proto.Marshal(&pb.Capability{PeerId: id.String(), Sequence: seq, TimestampUnixMs: stamped.UnixMilli(),
		NodeName: "hostile", Models: []*pb.ModelCapability{{Name: "evil", Loaded: true}}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// valid is a correct announcement of the hostile host itself, with a fresh sequence.
func (h *hostileScoreTestHost) valid(t *testing.T) []byte {
	h.seq++
	return h.announcement(t, h.host.ID(), h.seq, time.Now())
}

func (h *hostileScoreTestHost) publish(t *testing.T, data []byte) {
	t.Helper()
	if err := h.topic.Publish(t.Context(), data); err != nil {
		t.Fatalf("hostile publish: %v", err)
	}
}

// waitScoreTest polls cond until it holds, failing the test after timeout.
func waitScoreTest(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
	}
}

// TestHostilePeerGraylisted runs two honest nodes and a hostile member that sends rejected
// announcements on the capability topic: the honest nodes' scores of it fall past the
// graylist threshold, they prune it from their mesh, and afterwards even its valid
// announcements never reach their tables, while they keep hearing each other.
func TestHostilePeerGraylisted(t *testing.T) {
	key := newTestKey(t)
	a, b := startScoreTestNode(t, key), startScoreTestNode(t, key)
	hostile := startHostileScoreTestHost(t, key)
	if err := b.host.Connect(t.Context(), infoOf(a.host)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []scoreTestNode{a, b} {
		if err := hostile.host.Connect(t.Context(), infoOf(n.host)); err != nil {
			t.Fatal(err)
		}
	}
	hID := hostile.host.ID()
	inMesh := func(n scoreTestNode) bool {
		s, ok := n.host.PeerScore(hID)
		return ok && s.Topics[capability.Topic] != nil && s.Topics[capability.Topic].TimeInMesh > 0
	}
	waitScoreTest(t, 60*time.Second, "A and B hear each other and have the hostile host in their mesh", func() bool {
		_, ab := a.ann.Table().Get(b.host.ID())
		_, ba := b.ann.Table().Get(a.host.ID())
		return ab && ba && inMesh(a) && inMesh(b)
	})

	// Control: while it behaves, its announcements are taken in.
	waitScoreTest(t, 30*time.Second, "A takes in the hostile host's valid announcement", func() bool {
		hostile.publish(t, hostile.valid(t))
		_, ok := a.ann.Table().Get(hID)
		return ok
	})
	good := hostile.seq

	// Rejected announcements, one at a time, each counted by A before the next.
	kinds := []struct {
		name string
		data func() []byte
	}{
		{"garbage", func() []byte { return []byte{0x07, 0xff, 0xff} }},
		{"another peer's ID", func() []byte { return hostile.announcement(t, b.host.ID(), uint64(time.Now().UnixNano()), time.Now()) }},
		{"its own sequence again", func() []byte { return hostile.announcement(t, hID, good, time.Now()) }},
		{"dated long ago", func() []byte {
			return hostile.announcement(t, hID, uint64(time.Now().UnixNano()), time.Now().Add(-3*time.Hour))
		}},
	}
	invalid := func() float64 {
		s, _ := a.host.PeerScore(hID)
		if ts := s.Topics[capability.Topic]; ts != nil {
			return ts.InvalidMessageDeliveries
		}
		return 0
	}
	sent := 0
	for {
		s, _ := a.host.PeerScore(hID)
		if s.Score < GraylistThreshold {
			break
		}
		if sent == 20 {
			t.Fatalf("A's score of the hostile host is %.1f after %d rejected announcements, want < %d", s.Score, sent, GraylistThreshold)
		}
		kind := kinds[sent%len(kinds)]
		before := invalid()
		hostile.publish(t, kind.data())
		sent++
		waitScoreTest(t, 10*time.Second, "A counts the hostile host's "+kind.name, func() bool { return invalid() > before+0.5 })
		s, _ = a.host.PeerScore(hID)
		t.Logf("rejected announcement %d (%s): A's score of the hostile host %.1f", sent, kind.name, s.Score)
	}
	t.Logf("graylisted by A after %d rejected announcements (thresholds: gossip %d, publish %d, graylist %d)",
		sent, GossipThreshold, PublishThreshold, GraylistThreshold)
	if sent != 5 {
		t.Errorf("graylisted after %d rejected announcements; the parameters say 5", sent)
	}
	waitScoreTest(t, 10*time.Second, "A and B prune the hostile host from their mesh", func() bool { return !inMesh(a) && !inMesh(b) })

	// Graylisted: its valid announcements are ignored, so its entry expires (TTL 1s) although
	// it announces ten times a TTL.
	waitScoreTest(t, 30*time.Second, "the hostile host's entry expires from A's table", func() bool {
		hostile.publish(t, hostile.valid(t))
		_, ok := a.ann.Table().Get(hID)
		return !ok
	})
	if peers := hostile.topic.ListPeers(); len(peers) != 2 {
		t.Fatalf("the hostile host sees %d topic peers, want A and B: its publishes would not reach them", len(peers))
	}
	// And it stays out for as long as A takes in ten announcements of B.
	first, _ := a.ann.Table().Get(b.host.ID())
	waitScoreTest(t, 30*time.Second, "A takes in ten more announcements of B", func() bool {
		hostile.publish(t, hostile.valid(t))
		if _, ok := a.ann.Table().Get(hID); ok {
			t.Fatalf("a valid announcement of the graylisted host reached A's table")
		}
		e, _ := a.ann.Table().Get(b.host.ID())
		return e.Capability.GetSequence() >= first.Capability.GetSequence()+10
	})
	if _, ok := b.ann.Table().Get(a.host.ID()); !ok {
		t.Error("B lost A")
	}
}
