package capability

import (
	"bytes"
	"math"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// fuzzPeerID is a peer ID derived from seed, the same in every run.
func fuzzPeerID(tb testing.TB, seed byte) peer.ID {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// fuzzMaxSize is the announcer's size limit while fuzzing: small, so that the fuzzer reaches it.
const fuzzMaxSize = 4 << 10

// FuzzValidateAnnouncement runs fuzzed announcement bytes through the real topic validator of a
// running Announcer. Two switches steer the bytes past checks random data rarely passes:
// signedByClaim makes the message's signed author the peer_id it claims (else a fixed other
// peer), and stampNow appends a timestamp_unix_ms of now (protobuf keeps a field's last value).
// The validator must never panic; what it accepts must carry the decoded Capability, be within
// the size limit when marshalled again, name its author, be dated sanely, fit the peer table,
// and be ignored when replayed; what it does not accept must carry nothing.
func FuzzValidateAnnouncement(f *testing.F) {
	author, relay := fuzzPeerID(f, 1), fuzzPeerID(f, 2)
	seed := func(c *pb.Capability) []byte {
		data, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		return data
	}
	full := &pb.Capability{PeerId: author.String(), NodeName: "desk", Version: "1.0", Sequence: 7,
		Models: []*pb.ModelCapability{
			{Name: "qwen", Digest: "sha256:00", Modality: pb.Modality_MODALITY_LLM, Engine: "llamacpp", Loaded: true,
				FreeSlots: 1, QueueDepth: 2, TokensPerSecond: 31.5, Parallel: 4, SizeBytes: 1 << 30, Inputs: []string{"text", "image"}},
			{Name: "bge", Modality: pb.Modality_MODALITY_EMBEDDING},
		},
		Hardware: &pb.Hardware{CpuCores: 8, MemoryBytes: 16 << 30, Accelerators: []string{"CUDA"}, CpuVariant: "haswell"},
		Links:    []*pb.PeerLink{{PeerId: relay.String(), RttMs: 0.4}, {PeerId: fuzzPeerID(f, 3).String()}}}
	f.Add(seed(full), true, true)
	f.Add(seed(full), false, true)
	f.Add(seed(full), true, false)
	f.Add(seed(&pb.Capability{PeerId: author.String(), Sequence: 1}), true, true)
	f.Add(seed(&pb.Capability{PeerId: author.String()}), true, true)
	f.Add(seed(&pb.Capability{PeerId: author.String(), Sequence: 1, TimestampUnixMs: 1 << 62}), true, false)
	f.Add(seed(&pb.Capability{PeerId: "not a peer", Sequence: 1}), true, true)
	f.Add([]byte{0x07, 0xff, 0x00}, true, true)
	f.Add(bytes.Repeat([]byte{0x0a, 0x00}, fuzzMaxSize), true, true)

	nodes := newGossipTestHosts(f, 1)
	startGossipTestAnnouncers(f, nodes, AnnouncerOptions{MaxSize: fuzzMaxSize})
	a := nodes[0].ann

	f.Fuzz(func(t *testing.T, data []byte, signedByClaim, stampNow bool) {
		// Each input starts from a validator that has seen no sequences, so a crasher replays.
		a.hwMu.Lock()
		clear(a.highWater)
		a.hwMu.Unlock()
		if stampNow {
			data = protowire.AppendTag(data[:len(data):len(data)], 7, protowire.VarintType)
			data = protowire.AppendVarint(data, uint64(time.Now().UnixMilli()))
		}
		from := author
		if claimed := new(pb.Capability); signedByClaim && proto.Unmarshal(data, claimed) == nil {
			if id, err := peer.Decode(claimed.GetPeerId()); err == nil {
				from = id
			}
		}
		msg := &pubsub.Message{Message: &pubsubpb.Message{Data: data, From: []byte(from)}, ReceivedFrom: relay}
		result := a.validate(t.Context(), relay, msg)
		validated, carried := msg.ValidatorData.(validatedCapability)
		switch result {
		case pubsub.ValidationAccept:
		case pubsub.ValidationIgnore, pubsub.ValidationReject:
			if msg.ValidatorData != nil {
				t.Fatalf("result %v carries %v", result, msg.ValidatorData)
			}
			return
		default:
			t.Fatalf("result %v", result)
		}
		if !carried || validated.capability == nil || !validated.first {
			t.Fatalf("accepted without a first capability: %#v", msg.ValidatorData)
		}
		if len(data) > fuzzMaxSize {
			t.Fatalf("accepted %d bytes, limit %d", len(data), fuzzMaxSize)
		}
		checkAccepted(t, validated.capability, from)

		replay := &pubsub.Message{Message: &pubsubpb.Message{Data: data, From: []byte(from)}, ReceivedFrom: relay}
		if got := a.validate(t.Context(), relay, replay); got != pubsub.ValidationIgnore {
			t.Fatalf("replay: %v, want ignored", got)
		}
	})
}

// checkAccepted checks an accepted announcement of from: it re-marshals within the size limit,
// names its author, is dated within the validator's window and becomes a table entry.
func checkAccepted(t *testing.T, c *pb.Capability, from peer.ID) {
	t.Helper()
	again, err := proto.Marshal(c)
	if err != nil || len(again) > fuzzMaxSize {
		t.Fatalf("accepted capability re-marshals to %d bytes (limit %d): %v", len(again), fuzzMaxSize, err)
	}
	if id, err := peer.Decode(c.GetPeerId()); err != nil || id != from || c.GetSequence() == 0 {
		t.Fatalf("accepted capability of %q (sequence %d) signed by %s", c.GetPeerId(), c.GetSequence(), from)
	}
	if n := len(c.GetLinks()); n > MaxLinks {
		t.Fatalf("accepted %d links, limit %d", n, MaxLinks)
	}
	for _, l := range c.GetLinks() {
		if rtt := l.GetRttMs(); rtt < 0 || math.IsNaN(rtt) || math.IsInf(rtt, 0) {
			t.Fatalf("accepted a link round trip of %v ms", rtt)
		}
	}
	now := time.Now()
	if stamped := time.UnixMilli(c.GetTimestampUnixMs()); stamped.After(now.Add(maxClockSkew)) || stamped.Before(now.Add(-maxAnnounceAge-time.Minute)) {
		t.Fatalf("accepted capability dated %v", stamped)
	}
	table := NewPeerTable()
	if !table.Update(from, c, now, true) {
		t.Fatal("accepted capability left the table unchanged")
	}
	entry, ok := table.Get(from)
	if !ok || entry.ID != from || entry.Capability != c || table.Len() != 1 {
		t.Fatalf("table entry %+v", entry)
	}
	for _, m := range c.GetModels() {
		if !entry.HasModel(m.GetName()) || entry.Model(m.GetName()) == nil {
			t.Fatalf("entry does not find its model %q", m.GetName())
		}
	}
}
