package router_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/router"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// twoPeers is a peer table of a preferred peer and a fallback: the router's input data. It
// counts the failures the router records.
type twoPeers struct {
	first, second router.Candidate

	mu       sync.Mutex
	failures map[string]int
}

func (p *twoPeers) WithModel(string) []router.Candidate { return []router.Candidate{p.first, p.second} }
func (p *twoPeers) Lookup(node string) (router.Candidate, bool) {
	for _, c := range []router.Candidate{p.first, p.second} {
		if c.Peer == node {
			return c, true
		}
	}
	return router.Candidate{}, false
}
func (p *twoPeers) Models() []string { return []string{"echo"} }
func (p *twoPeers) RecordFailure(id string) {
	p.mu.Lock()
	p.failures[id]++
	p.mu.Unlock()
}
func (p *twoPeers) RecordSuccess(string) {}

// deadAddr is a loopback address where nothing listens any more.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// dialCounter dials each peer's connection and counts the dials.
type dialCounter struct {
	mu    sync.Mutex
	conns map[string]grpc.ClientConnInterface
	dials map[string]int
}

func (d *dialCounter) dial(_ context.Context, id string) (grpc.ClientConnInterface, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials[id]++
	return d.conns[id], nil
}

func (d *dialCounter) count(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[id]
}

// TestRouterBansFailingPeer: a preferred peer whose calls really fail (nothing listens) is tried
// router.ban_after times, each time failing over to the healthy peer, and then banned: later
// requests go to the healthy peer without trying it.
func TestRouterBansFailingPeer(t *testing.T) {
	healthy := newTestNode(t, "healthy")
	close(healthy.gate)
	dead, err := grpc.NewClient(deadAddr(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	dials := &dialCounter{conns: map[string]grpc.ClientConnInterface{"dead": dead, "healthy": healthy.serve(t)}, dials: map[string]int{}}
	self, peers := routeToPeers(t, "dead", dials)

	chatServedByHealthy(t, self, 8)
	if n := dials.count("dead"); n != 5 {
		t.Errorf("the failing peer was tried %d times in 8 requests, want 5 (router.ban_after)", n)
	}
	if n := peers.failures["dead"]; n != 5 {
		t.Errorf("%d failures recorded for the failing peer, want 5", n)
	}
	if !self.svc.Router.Bans.Banned("dead") || self.svc.Router.Bans.Banned("healthy") {
		t.Error("want the failing peer banned and the healthy one not")
	}

	// When every peer that serves the model is banned, the client is told so.
	for range 5 {
		self.svc.Router.Bans.Fault("healthy", nil)
	}
	err = self.svc.StreamChat(t.Context(), chatRequest("hello", nil), func(*pb.GenerateResponse) error { return nil })
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "router.ban_after") {
		t.Errorf("every peer banned: %v, want UNAVAILABLE naming router.ban_after", err)
	}
}

// TestRouterBusyPeerIsNoFault: a peer that answers RESOURCE_EXHAUSTED (its queue is full) is
// skipped for the next node each time, and never banned nor scored down for it.
func TestRouterBusyPeerIsNoFault(t *testing.T) {
	busy, healthy := newTestNode(t, "busy"), newTestNode(t, "healthy")
	close(healthy.gate)
	dials := &dialCounter{conns: map[string]grpc.ClientConnInterface{"busy": busy.serve(t), "healthy": healthy.serve(t)}, dials: map[string]int{}}
	busy.fill(t)
	self, peers := routeToPeers(t, "busy", dials)

	chatServedByHealthy(t, self, 8)
	if n := dials.count("busy"); n != 8 {
		t.Errorf("the busy peer was asked %d times in 8 requests, want 8: busy is no reason to ban", n)
	}
	if n := peers.failures["busy"]; n != 0 {
		t.Errorf("%d failures recorded for a busy peer, want 0", n)
	}
	if self.svc.Router.Bans.Banned("busy") {
		t.Error("a busy peer was banned")
	}
	busy.release(t)
}

// routeToPeers makes a node whose router sends requests to first (ranked higher), then to the
// peer "healthy", dialled through dials, banning after 5 failures in a row.
func routeToPeers(t *testing.T, first string, dials *dialCounter) (*testNode, *twoPeers) {
	t.Helper()
	peers := &twoPeers{first: router.Candidate{Peer: first, Loaded: true, FreeSlots: 4},
		second: router.Candidate{Peer: "healthy", Loaded: true, FreeSlots: 1}, failures: map[string]int{}}
	self := newTestNode(t, "self")
	self.svc.Router = &router.Router{Self: "self", MaxHops: 1, Local: func(string) router.LocalModel { return router.LocalModel{} },
		Peers: peers, Dial: dials.dial, Bans: router.NewBans(5, time.Hour)}
	return self, peers
}

// chatServedByHealthy sends n chats through self and fails unless the peer "healthy" serves each.
func chatServedByHealthy(t *testing.T, self *testNode, n int) {
	t.Helper()
	for i := range n {
		var servedBy string
		err := self.svc.StreamChat(t.Context(), chatRequest("hello", nil), func(ev *pb.GenerateResponse) error {
			servedBy = ev.GetServedBy()
			return nil
		})
		if err != nil || servedBy != "healthy" {
			t.Fatalf("request %d: served by %q, %v; want the healthy peer", i, servedBy, err)
		}
	}
}
