package rpc

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/p2p/hosttest"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// limitTestInference is a transport test fixture, not an engine: Complete counts the call in,
// waits until the gate opens, and answers with a Final.
type limitTestInference struct {
	pb.UnimplementedInferenceServiceServer
	gate    chan struct{}
	entered atomic.Int32
}

// Complete holds the call at the gate.
func (s *limitTestInference) Complete(_ *pb.CompleteRequest, stream grpc.ServerStreamingServer[pb.GenerateResponse]) error {
	s.entered.Add(1)
	select {
	case <-s.gate:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	return stream.Send(&pb.GenerateResponse{Event: &pb.GenerateResponse_Final{Final: &pb.Final{}}})
}

// startLimitTestServer serves the gated inference service and health on a libp2p host and on
// loopback TCP, limited by limits; it returns the service, a pool of peer clients, the TCP
// address and a function that returns a peer's connection to the server.
func startLimitTestServer(t *testing.T, limits *PeerLimits) (*limitTestInference, *PeerClients, string, func() grpc.ClientConnInterface) {
	t.Helper()
	server, client := hosttest.New(t), hosttest.New(t)
	svc := &limitTestInference{gate: make(chan struct{})}
	srv := grpc.NewServer(limits.ServerOptions()...)
	pb.RegisterInferenceServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	closer, err := Serve(server, srv)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var serving sync.WaitGroup
	serving.Go(func() { _ = srv.Serve(tcp) })
	t.Cleanup(func() {
		srv.Stop()
		_ = closer.Close()
		serving.Wait()
	})
	pcs := newRPCTestClients(t, client, server)
	return svc, pcs, tcp.Addr().String(), func() grpc.ClientConnInterface { return connRPCTest(t, pcs, server.ID()) }
}

// startLimitTestCall starts Complete and waits for the server's first answer: a refusal ends
// the stream at once, an admitted call waits at the gate with no answer yet.
func startLimitTestCall(t *testing.T, cc grpc.ClientConnInterface) grpc.ServerStreamingClient[pb.GenerateResponse] {
	t.Helper()
	stream, err := pb.NewInferenceServiceClient(cc).Complete(t.Context(), &pb.CompleteRequest{Prompt: "hold"})
	if err != nil {
		t.Fatalf("start Complete: %v", err)
	}
	return stream
}

// finishLimitTestCall reads a call to its end and returns its error (nil for a Final then EOF).
func finishLimitTestCall(stream grpc.ServerStreamingClient[pb.GenerateResponse]) error {
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// waitLimitTest polls cond for up to 30 s.
func waitLimitTest(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// checkLimitTestRefusal checks that err is RESOURCE_EXHAUSTED with a retry hint.
func checkLimitTestRefusal(t *testing.T, what string, err error) time.Duration {
	t.Helper()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("%s: err = %v, want RESOURCE_EXHAUSTED", what, err)
	}
	wait, ok := RetryDelay(err)
	if !ok || wait <= 0 {
		t.Fatalf("%s: no retry hint in %v", what, err)
	}
	return wait
}

func TestPeerLimitsConcurrency(t *testing.T) {
	svc, _, tcpAddr, peerConn := startLimitTestServer(t, NewPeerLimits(4, 0))
	cc := peerConn()
	var held []grpc.ServerStreamingClient[pb.GenerateResponse]
	for range 4 {
		held = append(held, startLimitTestCall(t, cc))
	}
	waitLimitTest(t, "four calls at the gate", func() bool { return svc.entered.Load() == 4 })

	fifth := finishLimitTestCall(startLimitTestCall(t, cc))
	if wait := checkLimitTestRefusal(t, "fifth call", fifth); wait != busyRetryDelay {
		t.Errorf("fifth call's retry hint = %v, want %v", wait, busyRetryDelay)
	}
	if n := svc.entered.Load(); n != 4 {
		t.Errorf("%d calls reached the handler, want 4", n)
	}
	// A local client is not a peer: it is not limited.
	local := startLimitTestCall(t, dialRPCTestTCP(t, tcpAddr))
	waitLimitTest(t, "the local call at the gate", func() bool { return svc.entered.Load() == 5 })

	close(svc.gate)
	for i, s := range append(held, local) {
		if err := finishLimitTestCall(s); err != nil {
			t.Errorf("held call %d: %v", i, err)
		}
	}
	// Ended calls free their places.
	if err := finishLimitTestCall(startLimitTestCall(t, cc)); err != nil {
		t.Errorf("call after the others ended: %v", err)
	}
}

func TestPeerLimitsRate(t *testing.T) {
	limits := NewPeerLimits(0, 2.5) // a burst of 3, then one call per 400 ms
	now := time.Now()
	var mu sync.Mutex
	limits.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	_, _, tcpAddr, peerConn := startLimitTestServer(t, limits)
	health := healthpb.NewHealthClient(peerConn())
	check := func() error { _, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}); return err }

	for i := range 3 {
		if err := check(); err != nil {
			t.Fatalf("call %d of the burst: %v", i+1, err)
		}
	}
	if wait := checkLimitTestRefusal(t, "fourth call", check()); wait != 400*time.Millisecond {
		t.Errorf("retry hint = %v, want 400ms", wait)
	}
	local := healthpb.NewHealthClient(dialRPCTestTCP(t, tcpAddr))
	for i := range 5 {
		if _, err := local.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("local call %d: %v", i, err)
		}
	}
	advance(400 * time.Millisecond)
	if err := check(); err != nil {
		t.Fatalf("call after the bucket refilled by one: %v", err)
	}
	checkLimitTestRefusal(t, "call past the refill", check())
}

func TestPeerLimitsOff(t *testing.T) {
	limits := NewPeerLimits(0, 0)
	limits.now = func() time.Time { return time.Unix(0, 0) } // a frozen clock would starve any bucket
	_, _, _, peerConn := startLimitTestServer(t, limits)
	health := healthpb.NewHealthClient(peerConn())
	for i := range 50 {
		if _, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d with no limits: %v", i, err)
		}
	}
}
