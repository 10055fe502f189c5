package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/p2p"
	"github.com/ekisa-team/syn4pse/p2p/rpc"
)

// TestPeerLimitsOnNode: a node started with p2p.peer_max_requests = 4 lets a peer hold four
// calls at once and refuses its fifth with RESOURCE_EXHAUSTED and a retry hint, while a local
// client is not limited; a call that ends frees its place.
func TestPeerLimitsOnNode(t *testing.T) {
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := meshConfig(t, key, "a", nil)
	cfg.P2P.PeerMaxRequests, cfg.P2P.PeerRate = 4, 1000
	a, err := node.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(context.WithoutCancel(t.Context())) })
	conn := dialAsPeer(t, a, key)
	health := healthpb.NewHealthClient(conn)

	// Health watches stay open until cancelled: four calls held by the node for this peer.
	var cancels []context.CancelFunc
	for i := range 4 {
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		cancels = append(cancels, cancel)
		watch, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := watch.Recv(); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	_, err = health.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "p2p.peer_max_requests") {
		t.Fatalf("fifth call from the peer: %v, want RESOURCE_EXHAUSTED naming p2p.peer_max_requests", err)
	}
	if wait, ok := rpc.RetryDelay(err); !ok || wait <= 0 {
		t.Errorf("fifth call's refusal has no retry hint: %v", err)
	}
	if _, err := healthpb.NewHealthClient(grpcConn(t, a)).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("local client while the peer is at its limit: %v", err)
	}

	// The node learns of the cancel when the stream's reset arrives: poll for it.
	cancels[0]()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("call after a watch ended: %v", err)
		}
	}
}
