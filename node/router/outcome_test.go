package router_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc"

	"github.com/ekisa-team/syn4pse/node/router"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// TestOnForwardReportsOutcomes: each way a forward ends reaches OnForward once, under its own
// outcome, with real gRPC between this node and the peer.
func TestOnForwardReportsOutcomes(t *testing.T) {
	self, peer := newTestNode(t, "self"), newTestNode(t, "peer")
	close(self.gate)
	conn := peer.serve(t)
	var outcomes []string
	var dialErr error
	self.svc.Router = &router.Router{Self: "self", MaxHops: 1, Local: self.local,
		Peers: onePeer{router.Candidate{Peer: "peer", Loaded: true, FreeSlots: 1}},
		Dial: func(context.Context, string) (grpc.ClientConnInterface, error) {
			if dialErr != nil {
				return nil, dialErr
			}
			return conn, nil
		},
		OnForward: func(o string) { outcomes = append(outcomes, o) }}
	ask := func(model string) (servedBy string, err error) {
		req := chatRequest("hello", nil)
		req.Model = model
		err = self.svc.StreamChat(t.Context(), req, func(ev *pb.GenerateResponse) error {
			servedBy = ev.GetServedBy()
			return nil
		})
		return servedBy, err
	}
	expect := func(what string, want ...string) {
		t.Helper()
		if !slices.Equal(outcomes, want) {
			t.Fatalf("%s: outcomes %v, want %v", what, outcomes, want)
		}
		outcomes = nil
	}

	close(peer.gate)
	if by, err := ask("echo"); err != nil || by != "peer" {
		t.Fatalf("served by %q, %v; want the peer", by, err)
	}
	expect("peer answers", router.ForwardOK)

	// The peer says the request is wrong (it has no such model): the client's answer, no retry.
	if _, err := ask("nope"); err == nil {
		t.Fatal("a model no node has was served")
	}
	expect("peer rejects the request", router.ForwardRejected)

	dialErr = errors.New("no route to the peer")
	if by, err := ask("echo"); err != nil || by != "self" {
		t.Fatalf("peer unreachable: served by %q, %v; want this node", by, err)
	}
	expect("peer unreachable", router.ForwardPeerFault, router.ForwardLocalFallback)
	dialErr = nil

	busy := newTestNode(t, "peer")
	conn = busy.serve(t)
	busy.fill(t)
	if by, err := ask("echo"); err != nil || by != "self" {
		t.Fatalf("peer busy: served by %q, %v; want this node", by, err)
	}
	expect("peer busy", router.ForwardBusy, router.ForwardLocalFallback)
	busy.release(t)
}
