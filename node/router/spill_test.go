package router_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/enginetest"
	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/router"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// testNode is the inference service of one node over the fake engine (engine/enginetest), with
// one model, "echo", of one slot and a queue of one.
type testNode struct {
	svc     *api.InferenceService
	catalog *models.Manager
	gate    chan struct{}
	held    []chan error // the requests fill holds
}

func newTestNode(t *testing.T, id string) *testNode {
	t.Helper()
	path := filepath.Join(t.TempDir(), "echo.gguf")
	if err := os.WriteFile(path, []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	eng := &enginetest.Engine{Gate: make(chan struct{})}
	var registry engine.Registry
	registry.RegisterLLM(eng)
	catalog := models.New(&registry, []models.Decl{{Name: "echo", Modality: "llm", Engine: engine.DefaultEngine, Path: path,
		Enabled: true, Options: engine.LoadOptions{Parallel: 1}}}, models.Options{MaxQueue: 1})
	t.Cleanup(func() { catalog.Close() })
	return &testNode{svc: &api.InferenceService{Models: catalog, NodeID: id}, catalog: catalog, gate: eng.Gate}
}

// local tells the router about the node's model as the node does: slots free of admitted requests.
func (n *testNode) local(name string) router.LocalModel {
	s, ok := n.catalog.Status(name)
	if !ok {
		return router.LocalModel{}
	}
	return router.LocalModel{Declared: true, Loaded: s.State == models.StateLoaded, FreeSlots: max(s.Info.Parallel-s.Requests, 0)}
}

// fill takes the model's slot and its queue place with requests held at the engine's gate.
func (n *testNode) fill(t *testing.T) {
	t.Helper()
	for want := range 2 {
		done := make(chan error, 1)
		n.held = append(n.held, done)
		go func() {
			done <- n.svc.StreamChat(t.Context(), chatRequest("held", nil), func(*pb.GenerateResponse) error { return nil })
		}()
		deadline := time.Now().Add(30 * time.Second)
		for s, _ := n.catalog.Status("echo"); s.Stats.Active+s.Stats.Queued != want+1; s, _ = n.catalog.Status("echo") {
			if time.Now().After(deadline) {
				t.Fatalf("engine stats %+v: the held requests did not arrive", s.Stats)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// release opens the engine's gate and waits for the held requests to end.
func (n *testNode) release(t *testing.T) {
	t.Helper()
	close(n.gate)
	for _, done := range n.held {
		if err := <-done; err != nil {
			t.Fatalf("a held request: %v", err)
		}
	}
}

// serve serves the node's gRPC inference service on loopback and returns a connection to it.
func (n *testNode) serve(t *testing.T) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterInferenceServiceServer(srv, n.svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// onePeer is a peer table of one peer: the router's input data.
type onePeer struct{ c router.Candidate }

func (p onePeer) WithModel(string) []router.Candidate    { return []router.Candidate{p.c} }
func (p onePeer) Lookup(string) (router.Candidate, bool) { return p.c, true }
func (p onePeer) Models() []string                       { return []string{"echo"} }
func (onePeer) RecordFailure(string)                     {}
func (onePeer) RecordSuccess(string)                     {}

func chatRequest(content string, routing *pb.Routing) *pb.ChatRequest {
	return &pb.ChatRequest{Model: "echo", Messages: []*pb.Message{{Role: "user", Content: content}}, Routing: routing}
}

// TestBusyNodeSpillsToAPeer: a node whose queue for a model is full sends the request to a peer
// that has the model (here on disk, so this node came first) instead of refusing it.
func TestBusyNodeSpillsToAPeer(t *testing.T) {
	self, peer := newTestNode(t, "self"), newTestNode(t, "peer")
	close(peer.gate)
	conn := peer.serve(t)
	self.fill(t) // before the router: these two run here
	self.svc.Router = &router.Router{Self: "self", MaxHops: 1, Local: self.local,
		Peers: onePeer{router.Candidate{Peer: "peer", Loaded: false, FreeSlots: 1}},
		Dial:  func(context.Context, string) (grpc.ClientConnInterface, error) { return conn, nil }}
	ask := func(routing *pb.Routing) (text, servedBy string, err error) {
		var out strings.Builder
		err = self.svc.StreamChat(t.Context(), chatRequest("hello", routing), func(ev *pb.GenerateResponse) error {
			out.WriteString(ev.GetDelta().GetText())
			servedBy = ev.GetServedBy()
			return nil
		})
		return out.String(), servedBy, err
	}

	if text, by, err := ask(nil); err != nil || text != " hello" || by != "peer" {
		t.Fatalf("busy here: %q served by %q, %v; want the peer's answer", text, by, err)
	}
	if _, _, err := ask(&pb.Routing{LocalOnly: true}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("busy here, local only: %v, want RESOURCE_EXHAUSTED", err)
	}

	// Busy everywhere: the client learns it should retry, not that the model is gone.
	busyPeer := newTestNode(t, "peer")
	conn = busyPeer.serve(t)
	busyPeer.fill(t)
	_, _, err := ask(nil)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "retry later") {
		t.Fatalf("busy everywhere: %v, want RESOURCE_EXHAUSTED", err)
	}
	busyPeer.release(t)
	self.release(t)
	if text, by, err := ask(&pb.Routing{LocalOnly: true}); err != nil || text != " hello" || by != "self" {
		t.Fatalf("after the queues emptied: %q served by %q, %v", text, by, err)
	}
}
