package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ekisa-team/syn4pse/node/router"
	"github.com/ekisa-team/syn4pse/p2p"
	"github.com/ekisa-team/syn4pse/p2p/blob"
	"github.com/ekisa-team/syn4pse/p2p/capability"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// discardSink takes a blob and keeps nothing.
type discardSink struct{ n int64 }

func (s *discardSink) Offset() int64 { return s.n }
func (s *discardSink) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	return len(p), nil
}

// TestBlobFailuresBanThePeer: pulls that really fail against a peer (it announces a model but
// does not serve blobs) count towards its ban as the router's failures do; a busy peer and a
// pull cancelled here do not, and a success resets the run. A banned peer is offered to no
// pull.
func TestBlobFailuresBanThePeer(t *testing.T) {
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	start := func() *p2p.Host {
		h, err := p2p.New(t.Context(), p2p.Config{DataDir: t.TempDir(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SwarmKey: &key})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	self, bad := start(), start()
	if err := self.Libp2p().Connect(t.Context(), peer.AddrInfo{ID: bad.ID(), Addrs: bad.Libp2p().Addrs()}); err != nil {
		t.Fatal(err)
	}
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	announce := func(h *p2p.Host, models ...*pb.ModelCapability) *capability.Announcer {
		a, err := capability.NewAnnouncer(h.Libp2p(), h.PubSub(), func() *pb.Capability { return &pb.Capability{Models: models} },
			capability.AnnouncerOptions{Interval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	announce(bad, &pb.ModelCapability{Name: "tiny", Digest: digest, SizeBytes: 1 << 20})
	m := &mesh{host: self, announcer: announce(self), bans: router.NewBans(3, time.Hour)}
	offered := func() bool {
		offers := m.Offers(t.Context(), "tiny", "")
		return len(offers) == 1 && offers[0].Peer == bad.ID()
	}
	for deadline := time.Now().Add(30 * time.Second); !offered(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the peer's model is not offered to pulls")
		}
	}
	pull := func() {
		t.Helper()
		err := m.Fetch(t.Context(), bad.ID(), digest, 1<<20, &discardSink{}, nil)
		if err == nil {
			t.Fatal("a pull from a peer that serves no blobs succeeded")
		}
		m.Report(bad.ID(), err)
	}

	pull()
	pull()
	m.Report(bad.ID(), nil) // a transfer that went well
	pull()
	pull()
	for range 5 {
		m.Report(bad.ID(), fmt.Errorf("fetch: %w", blob.ErrBusy))
		m.Report(bad.ID(), fmt.Errorf("fetch: %w", context.Canceled))
	}
	if m.bans.Banned(bad.ID().String()) {
		t.Fatal("banned after two failures since a success, busy answers and cancelled pulls")
	}
	pull()
	if !m.bans.Banned(bad.ID().String()) {
		t.Fatal("not banned after three failed pulls in a row (router.ban_after = 3)")
	}
	if offers := m.Offers(t.Context(), "tiny", ""); len(offers) != 0 {
		t.Errorf("a banned peer is offered to pulls: %v", offers)
	}
	// syn4pse peers and /api/peers show the ban.
	if peers := m.Peers(); len(peers) != 1 || !peers[0].GetBanned() {
		t.Errorf("peers %v: want the one peer, marked banned", peers)
	}
}
