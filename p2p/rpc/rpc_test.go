package rpc

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	p2ptest "github.com/libp2p/go-libp2p/core/test"
	manet "github.com/multiformats/go-multiaddr/net"
	msmux "github.com/multiformats/go-multistream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ekisa-team/syn4pse/p2p/hosttest"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// rpcTestInference is a transport test fixture, not an engine: Complete streams back the
// prompt's words, one Delta each, cycling through them until SamplingParams.MaxTokens deltas
// when that is more than the prompt has, then a Final.
type rpcTestInference struct {
	pb.UnimplementedInferenceServiceServer
}

// Complete streams the prompt's words back.
func (rpcTestInference) Complete(req *pb.CompleteRequest, stream grpc.ServerStreamingServer[pb.GenerateResponse]) error {
	words := strings.Fields(req.GetPrompt())
	n := max(len(words), int(req.GetSampling().GetMaxTokens()))
	for i := range n {
		delta := &pb.GenerateResponse{Event: &pb.GenerateResponse_Delta{Delta: &pb.Delta{Text: words[i%len(words)]}}}
		if err := stream.Send(delta); err != nil {
			return err
		}
	}
	return stream.Send(&pb.GenerateResponse{Event: &pb.GenerateResponse_Final{Final: &pb.Final{}}})
}

// rpcTestCaller is what a handler learned about its caller through PeerFromContext.
type rpcTestCaller struct {
	id peer.ID
	ok bool
}

// rpcTestServer is one gRPC server with the health and inference services, served both on a
// libp2p host (Serve) and on loopback TCP, recording the caller of every call.
type rpcTestServer struct {
	host    host.Host
	srv     *grpc.Server
	rpc     io.Closer
	tcpAddr string

	mu   sync.Mutex
	last rpcTestCaller // the caller of the latest call
}

func (s *rpcTestServer) record(ctx context.Context) {
	id, ok := PeerFromContext(ctx)
	s.mu.Lock()
	s.last = rpcTestCaller{id, ok}
	s.mu.Unlock()
}

func (s *rpcTestServer) lastCaller() rpcTestCaller {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func startRPCTestServer(tb testing.TB, h host.Host) *rpcTestServer {
	tb.Helper()
	s := &rpcTestServer{host: h}
	s.srv = grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			s.record(ctx)
			return next(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
			s.record(ss.Context())
			return next(srv, ss)
		}),
	)
	healthpb.RegisterHealthServer(s.srv, health.NewServer()) // SERVING for the empty service name
	pb.RegisterInferenceServiceServer(s.srv, rpcTestInference{})

	rpc, err := Serve(h, s.srv)
	if err != nil {
		tb.Fatalf("Serve: %v", err)
	}
	s.rpc = rpc
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("tcp listen: %v", err)
	}
	s.tcpAddr = tcp.Addr().String()
	var serving sync.WaitGroup
	serving.Go(func() { s.srv.Serve(tcp) })
	tb.Cleanup(func() {
		s.srv.Stop()
		if err := s.rpc.Close(); err != nil {
			tb.Errorf("close rpc listener: %v", err)
		}
		serving.Wait()
	})
	return s
}

// newRPCTestClients returns a PeerClients on client that knows servers' addresses, as discovery
// would have told it.
func newRPCTestClients(tb testing.TB, client host.Host, servers ...host.Host) *PeerClients {
	tb.Helper()
	for _, server := range servers {
		client.Peerstore().AddAddrs(server.ID(), server.Addrs(), peerstore.PermanentAddrTTL)
	}
	pcs := NewPeerClients(client)
	tb.Cleanup(func() { pcs.Close() })
	return pcs
}

func connRPCTest(tb testing.TB, pcs *PeerClients, id peer.ID) *grpc.ClientConn {
	tb.Helper()
	cc, err := pcs.Conn(tb.Context(), id)
	if err != nil {
		tb.Fatalf("Conn: %v", err)
	}
	return cc
}

func dialRPCTestTCP(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("tcp client: %v", err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

func checkRPCTestHealth(ctx context.Context, cc *grpc.ClientConn) error {
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return errors.New("health: " + resp.GetStatus().String())
	}
	return nil
}

// completeRPCTest runs Complete and returns the streamed deltas.
func completeRPCTest(ctx context.Context, cc *grpc.ClientConn, prompt string, maxTokens int32) ([]string, error) {
	req := &pb.CompleteRequest{Prompt: prompt, Sampling: &pb.SamplingParams{MaxTokens: &maxTokens}}
	stream, err := pb.NewInferenceServiceClient(cc).Complete(ctx, req)
	if err != nil {
		return nil, err
	}
	var deltas []string
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return deltas, nil
		}
		if err != nil {
			return deltas, err
		}
		if d := resp.GetDelta(); d != nil {
			deltas = append(deltas, d.GetText())
		}
	}
}

func TestRPCCalls(t *testing.T) {
	server := startRPCTestServer(t, hosttest.New(t))
	client := hosttest.New(t)
	pcs := newRPCTestClients(t, client, server.host)
	p2pConn := connRPCTest(t, pcs, server.host.ID())

	tests := []struct {
		name   string
		cc     *grpc.ClientConn
		caller rpcTestCaller
	}{
		{"libp2p", p2pConn, rpcTestCaller{client.ID(), true}},
		{"tcp", dialRPCTestTCP(t, server.tcpAddr), rpcTestCaller{}}, // a local client is no peer
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server.record(context.Background()) // forget the previous caller
			if err := checkRPCTestHealth(t.Context(), tt.cc); err != nil {
				t.Fatalf("unary health check: %v", err)
			}
			if got := server.lastCaller(); got != tt.caller {
				t.Errorf("unary handler saw caller %+v, want %+v", got, tt.caller)
			}

			const prompt = "the quick brown fox jumps"
			deltas, err := completeRPCTest(t.Context(), tt.cc, prompt, 0)
			if err != nil {
				t.Fatalf("streaming Complete: %v", err)
			}
			if want := strings.Fields(prompt); !slices.Equal(deltas, want) {
				t.Errorf("streamed %q, want %q", deltas, want)
			}
			if got := server.lastCaller(); got != tt.caller {
				t.Errorf("stream handler saw caller %+v, want %+v", got, tt.caller)
			}
		})
	}
}

func TestRPCConnPool(t *testing.T) {
	server := startRPCTestServer(t, hosttest.New(t))
	pcs := newRPCTestClients(t, hosttest.New(t), server.host)
	id := server.host.ID()

	conns := make([]*grpc.ClientConn, 8) // concurrent first use, then one more
	var callers sync.WaitGroup
	for i := range conns[1:] {
		callers.Go(func() { conns[i+1], _ = pcs.Conn(t.Context(), id) })
	}
	callers.Wait()
	first := connRPCTest(t, pcs, id)
	for i, cc := range conns[1:] {
		if cc != first {
			t.Fatalf("Conn %d returned %p, want the pooled %p", i, cc, first)
		}
	}

	pcs.Forget(id)
	if state := first.GetState(); state != connectivity.Shutdown {
		t.Errorf("forgotten conn is %s, want %s", state, connectivity.Shutdown)
	}
	fresh := connRPCTest(t, pcs, id)
	if fresh == first {
		t.Error("Conn after Forget returned the forgotten conn")
	}
	if err := checkRPCTestHealth(t.Context(), fresh); err != nil {
		t.Errorf("call on the fresh conn: %v", err)
	}

	if err := pcs.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := pcs.Conn(t.Context(), id); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Conn after Close: %v, want net.ErrClosed", err)
	}
}

func TestRPCServerRestart(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	first := hosttest.New(t, libp2p.Identity(key))
	startRPCTestServer(t, first)
	client := hosttest.New(t)
	pcs := newRPCTestClients(t, client, first)
	id := first.ID()
	cc := connRPCTest(t, pcs, id)
	if err := checkRPCTestHealth(t.Context(), cc); err != nil {
		t.Fatalf("call before restart: %v", err)
	}

	first.Close()
	if err := checkRPCTestHealth(t.Context(), cc); err == nil {
		t.Fatal("call succeeded after the server host closed")
	}
	for cc.GetState() == connectivity.Ready && cc.WaitForStateChange(t.Context(), connectivity.Ready) {
		// gRPC may report the failed call before it marks the connection down.
	}
	if _, err := pcs.Conn(t.Context(), id); err == nil {
		t.Fatal("Conn succeeded while the server was down")
	}
	if state := cc.GetState(); state != connectivity.Shutdown {
		t.Errorf("broken conn is %s after a failed Conn, want it closed (%s)", state, connectivity.Shutdown)
	}

	// The same node comes back on another port, and discovery tells the client where.
	second := hosttest.New(t, libp2p.Identity(key))
	startRPCTestServer(t, second)
	client.Peerstore().AddAddrs(id, second.Addrs(), peerstore.PermanentAddrTTL)
	fresh := connRPCTest(t, pcs, id)
	if fresh == cc {
		t.Error("Conn after the server returned gave back the broken conn")
	}
	if err := checkRPCTestHealth(t.Context(), fresh); err != nil {
		t.Errorf("call after the server returned: %v", err)
	}
}

func TestRPCGarbageRefused(t *testing.T) {
	server := startRPCTestServer(t, hosttest.New(t))
	client := hosttest.New(t)
	pcs := newRPCTestClients(t, client, server.host)
	cc := connRPCTest(t, pcs, server.host.ID())
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	junk := strings.Repeat("\xde\xad\xbe\xef\x13", 1000)
	garbage := []struct {
		name, payload string
	}{
		{"nothing", ""},
		{"binary", junk},
		{"http1", "GET / HTTP/1.1\r\nHost: syn4pse\r\n\r\n"},
		{"preface then junk frames", preface + junk},
		{"truncated preface", preface[:10]},
	}
	for _, g := range garbage {
		t.Run(g.name, func(t *testing.T) {
			s, err := client.NewStream(t.Context(), server.host.ID(), Protocol)
			if err != nil {
				t.Fatalf("open raw stream: %v", err)
			}
			defer s.Reset()
			if _, err := io.WriteString(s, g.payload); err != nil {
				t.Fatalf("write garbage: %v", err)
			}
			if err := s.CloseWrite(); err != nil {
				t.Fatalf("close write: %v", err)
			}
			// The deadline only turns a server that keeps the stream open into a failure
			// instead of a hang; the server refuses well before it.
			s.SetReadDeadline(time.Now().Add(30 * time.Second))
			reply, err := io.ReadAll(s)
			if timeout := net.Error(nil); errors.As(err, &timeout) && timeout.Timeout() {
				t.Fatalf("server kept the garbage stream open: %v", err)
			}
			t.Logf("server answered %d bytes, then %v", len(reply), err)
			if err := checkRPCTestHealth(t.Context(), cc); err != nil {
				t.Fatalf("call on the established conn after garbage: %v", err)
			}
		})
	}

	pcs.Forget(server.host.ID()) // a new connection works too
	if _, err := completeRPCTest(t.Context(), connRPCTest(t, pcs, server.host.ID()), "still serving", 0); err != nil {
		t.Errorf("stream after garbage: %v", err)
	}
}

func TestRPCDialFailures(t *testing.T) {
	noRPC := hosttest.New(t)                          // a real peer that does not serve Protocol
	stopped := startRPCTestServer(t, hosttest.New(t)) // one that stopped serving it
	if err := stopped.rpc.Close(); err != nil {
		t.Fatalf("close rpc listener: %v", err)
	}
	client := hosttest.New(t)
	pcs := newRPCTestClients(t, client, noRPC, stopped.host)

	// A "peer" that never answers the libp2p handshake: a TCP listener nobody accepts on (the
	// kernel still completes the connect).
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	silentAddr, err := manet.FromNetAddr(silent.Addr())
	if err != nil {
		t.Fatal(err)
	}
	silentID := p2ptest.RandPeerIDFatal(t)
	client.Peerstore().AddAddr(silentID, silentAddr, peerstore.PermanentAddrTTL)

	tests := []struct {
		name    string
		id      peer.ID
		timeout time.Duration
		want    error
	}{
		// Refused at protocol negotiation, long before the deadline.
		{"protocol not served", noRPC.ID(), time.Minute, msmux.ErrNotSupported[protocol.ID]{}},
		{"rpc listener closed", stopped.host.ID(), time.Minute, msmux.ErrNotSupported[protocol.ID]{}},
		// Never answers: only the caller's deadline ends the wait.
		{"peer does not answer", silentID, 300 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			cc, err := pcs.Conn(ctx, tt.id)
			if err == nil {
				t.Fatalf("Conn = %p, want an error", cc)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Conn error %q, want one wrapping %T", err, tt.want)
			}
		})
	}
}

// BenchmarkRPC compares the same gRPC server reached over libp2p (Serve + PeerClients) and
// over plain loopback TCP, alternating the two in every iteration so both see the same machine.
func BenchmarkRPC(b *testing.B) {
	server := startRPCTestServer(b, hosttest.New(b))
	pcs := newRPCTestClients(b, hosttest.New(b), server.host)
	p2pConn := connRPCTest(b, pcs, server.host.ID())
	tcpConn := dialRPCTestTCP(b, server.tcpAddr)
	if err := checkRPCTestHealth(b.Context(), tcpConn); err != nil {
		b.Fatal(err)
	}

	b.Run("unary", func(b *testing.B) {
		var p2pTimes, tcpTimes []time.Duration
		for i := 0; b.Loop(); i++ {
			p2p, tcp := timeRPCBenchPair(b, i, p2pConn, tcpConn, checkRPCTestHealth)
			p2pTimes, tcpTimes = append(p2pTimes, p2p), append(tcpTimes, tcp)
		}
		p2p50, tcp50 := percentileRPCBench(p2pTimes, 50), percentileRPCBench(tcpTimes, 50)
		b.ReportMetric(p2p50, "libp2p-p50-µs")
		b.ReportMetric(tcp50, "tcp-p50-µs")
		b.ReportMetric(p2p50/tcp50, "p50-libp2p/tcp")
		b.ReportMetric(percentileRPCBench(p2pTimes, 99)/percentileRPCBench(tcpTimes, 99), "p99-libp2p/tcp")
	})

	streams := []struct {
		name   string
		word   string
		tokens int32
		unit   string // what throughput counts: messages, or megabytes for bulk frames
	}{
		{"stream-small", "token", 1024, "msgs/s"},
		{"stream-16KiB", strings.Repeat("x", 16<<10), 256, "MB/s"},
	}
	for _, st := range streams {
		b.Run(st.name, func(b *testing.B) {
			stream := func(ctx context.Context, cc *grpc.ClientConn) error {
				deltas, err := completeRPCTest(ctx, cc, st.word, st.tokens)
				if err == nil && len(deltas) != int(st.tokens) {
					err = errors.New("short stream")
				}
				return err
			}
			var p2pTotal, tcpTotal time.Duration
			n := 0
			for ; b.Loop(); n++ {
				p2p, tcp := timeRPCBenchPair(b, n, p2pConn, tcpConn, stream)
				p2pTotal, tcpTotal = p2pTotal+p2p, tcpTotal+tcp
			}
			amount := float64(n) * float64(st.tokens)
			if st.unit == "MB/s" {
				amount *= float64(len(st.word)) / 1e6
			}
			p2pRate, tcpRate := amount/p2pTotal.Seconds(), amount/tcpTotal.Seconds()
			b.ReportMetric(p2pRate, "libp2p-"+st.unit)
			b.ReportMetric(tcpRate, "tcp-"+st.unit)
			b.ReportMetric(p2pRate/tcpRate, "throughput-libp2p/tcp")
		})
	}
}

// timeRPCBenchPair times call once over each transport, libp2p first in even iterations and TCP
// first in odd ones, so that neither always runs on a cache the other warmed.
func timeRPCBenchPair(b *testing.B, iteration int, p2pConn, tcpConn *grpc.ClientConn, call func(context.Context, *grpc.ClientConn) error) (p2p, tcp time.Duration) {
	timeCall := func(cc *grpc.ClientConn) time.Duration {
		start := time.Now()
		if err := call(b.Context(), cc); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	if iteration%2 == 0 {
		p2p = timeCall(p2pConn)
		tcp = timeCall(tcpConn)
	} else {
		tcp = timeCall(tcpConn)
		p2p = timeCall(p2pConn)
	}
	return p2p, tcp
}

// percentileRPCBench returns the p-th percentile of times, in microseconds.
func percentileRPCBench(times []time.Duration, p int) float64 {
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	return float64(sorted[(len(sorted)-1)*p/100]) / float64(time.Microsecond)
}
