package router

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	gproto "google.golang.org/protobuf/proto"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// scriptedPeer is a peer's inference service over gRPC on loopback that streams given deltas
// and then fails with failCode, or ends with a Final when failCode is OK. It records the
// requests it got. The router's side of the wire is what is under test; the peer's engine is
// out of scope here (cmd/syn4pse's TestMeshStreamSurvivesItsNode runs real nodes).
type scriptedPeer struct {
	pb.UnimplementedInferenceServiceServer
	id       string
	deltas   []string
	failCode codes.Code
	// promptTokens is what the Final reports.
	promptTokens int32

	mu    sync.Mutex
	chats []*pb.ChatRequest
	comps []*pb.CompleteRequest
}

func (p *scriptedPeer) Chat(req *pb.ChatRequest, stream grpc.ServerStreamingServer[pb.GenerateResponse]) error {
	p.mu.Lock()
	p.chats = append(p.chats, gproto.Clone(req).(*pb.ChatRequest))
	p.mu.Unlock()
	return p.play(stream)
}

func (p *scriptedPeer) Complete(req *pb.CompleteRequest, stream grpc.ServerStreamingServer[pb.GenerateResponse]) error {
	p.mu.Lock()
	p.comps = append(p.comps, gproto.Clone(req).(*pb.CompleteRequest))
	p.mu.Unlock()
	return p.play(stream)
}

func (p *scriptedPeer) play(stream grpc.ServerStreamingServer[pb.GenerateResponse]) error {
	id := "gen-" + p.id
	for i, text := range p.deltas {
		ev := &pb.GenerateResponse{Id: id, Model: "m", ServedBy: p.id,
			Event: &pb.GenerateResponse_Delta{Delta: &pb.Delta{Text: text, CompletionTokens: int32(i + 1)}}}
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	if p.failCode != codes.OK {
		return status.Error(p.failCode, "the engine died")
	}
	n := int32(len(p.deltas))
	final := &pb.Final{FinishReason: pb.FinishReason_FINISH_REASON_STOP, ServedBy: p.id,
		Usage: &pb.Usage{PromptTokens: p.promptTokens, CompletionTokens: n, TotalTokens: p.promptTokens + n}}
	return stream.Send(&pb.GenerateResponse{Id: id, Model: "m", ServedBy: p.id, Event: &pb.GenerateResponse_Final{Final: final}})
}

func (p *scriptedPeer) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.chats) + len(p.comps)
}

func (p *scriptedPeer) serve(t *testing.T) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterInferenceServiceServer(srv, p)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// resumeMesh is a router on a node without the model, with peers B (preferred) and C.
func resumeMesh(t *testing.T, peers ...*scriptedPeer) *Router {
	t.Helper()
	conns := map[string]*grpc.ClientConn{}
	var tbl table
	for i, p := range peers {
		conns[p.id] = p.serve(t)
		tbl = append(tbl, Candidate{Peer: p.id, Loaded: true, FreeSlots: len(peers) - i})
	}
	return &Router{Self: "A", MaxHops: 2, Local: func(string) LocalModel { return LocalModel{} }, Peers: tbl,
		Dial: func(_ context.Context, peer string) (grpc.ClientConnInterface, error) { return conns[peer], nil }}
}

// received is what a client of the stream saw.
type received struct {
	ids   map[string]bool
	text  strings.Builder
	final *pb.Final
}

func (r *received) send(ev *pb.GenerateResponse) error {
	r.ids[ev.GetId()] = true
	r.text.WriteString(ev.GetDelta().GetText())
	if f := ev.GetFinal(); f != nil {
		r.final = f
	}
	return nil
}

func noLocal[Req any](context.Context, Req, Sender) error {
	return status.Error(codes.Internal, "this node has no model")
}

func TestChatContinuesOnTheNextNode(t *testing.T) {
	b := &scriptedPeer{id: "B", deltas: []string{"Once", " upon", " a "}, failCode: codes.Unavailable}
	c := &scriptedPeer{id: "C", deltas: []string{"time", "."}, promptTokens: 30}
	r := resumeMesh(t, b, c)
	var outcomes []string
	r.OnForward = func(o string) { outcomes = append(outcomes, o) }
	req := &pb.ChatRequest{Model: "m", Messages: []*pb.Message{{Role: "user", Content: "Tell a story"}},
		Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(10)), Stop: []string{"The end"}}}
	got := received{ids: map[string]bool{}}
	if err := r.Chat(t.Context(), req, got.send, noLocal); err != nil {
		t.Fatalf("the stream failed: %v", err)
	}
	// B broke mid-stream, C served the rest, and the stream as a whole was resumed.
	if want := []string{ForwardBroken, ForwardOK, ForwardResumed}; !slices.Equal(outcomes, want) {
		t.Fatalf("forward outcomes %v, want %v", outcomes, want)
	}

	// C got the conversation with the reply so far as an open assistant turn, and the tokens
	// left; the stop strings travel with it.
	if len(c.chats) != 1 {
		t.Fatalf("C got %d requests, want 1", len(c.chats))
	}
	cont := c.chats[0]
	msgs := cont.GetMessages()
	if len(msgs) != 2 || msgs[1].GetRole() != "assistant" || msgs[1].GetContent() != "Once upon a " || !cont.GetContinueFinalMessage() {
		t.Fatalf("continuation request: %v", cont)
	}
	if cont.GetSampling().GetMaxTokens() != 7 || strings.Join(cont.GetSampling().GetStop(), "|") != "The end" || cont.GetRouting().GetHops() != 1 {
		t.Fatalf("continuation sampling %v, routing %v: want max_tokens 10-3, the stop strings, one hop", cont.GetSampling(), cont.GetRouting())
	}
	if len(req.GetMessages()) != 1 {
		t.Fatal("the client's request was changed")
	}

	// The client saw one stream: one id, the text of both parts once, both nodes, all tokens.
	f := got.final
	if got.text.String() != "Once upon a time." || len(got.ids) != 1 || !got.ids["gen-B"] {
		t.Fatalf("client got %q with ids %v", got.text.String(), got.ids)
	}
	if f.GetServedBy() != "B,C" || f.GetFinishReason() != pb.FinishReason_FINISH_REASON_STOP {
		t.Fatalf("final %v: want served by B,C and C's finish reason", f)
	}
	if u := f.GetUsage(); u.GetPromptTokens() != 30 || u.GetCompletionTokens() != 5 || u.GetTotalTokens() != 35 {
		t.Fatalf("usage %v: want C's 30 prompt tokens and 3+2 completion tokens", u)
	}
}

func TestCompletionContinuesOnTheNextNode(t *testing.T) {
	b := &scriptedPeer{id: "B", deltas: []string{" upon", " a"}, failCode: codes.Internal}
	c := &scriptedPeer{id: "C", deltas: []string{" time"}, promptTokens: 6}
	r := resumeMesh(t, b, c)
	got := received{ids: map[string]bool{}}
	req := &pb.CompleteRequest{Model: "m", Prompt: "Once"}
	if err := r.Complete(t.Context(), req, got.send, noLocal); err != nil {
		t.Fatal(err)
	}
	if len(c.comps) != 1 || c.comps[0].GetPrompt() != "Once upon a" || c.comps[0].GetSampling().GetMaxTokens() != 0 {
		t.Fatalf("continuation request %v: want the prompt and the text so far, no token limit", c.comps)
	}
	if got.text.String() != " upon a time" || got.final.GetServedBy() != "B,C" || got.final.GetUsage().GetCompletionTokens() != 3 {
		t.Fatalf("client got %q, final %v", got.text.String(), got.final)
	}
}

// TestStreamsThatAreNotContinued: what a continuation cannot serve whole, an answer about the
// request, and a failure with nobody left to continue end as before, with the error.
func TestStreamsThatAreNotContinued(t *testing.T) {
	chat := func(sp *pb.SamplingParams) *pb.ChatRequest {
		return &pb.ChatRequest{Model: "m", Messages: []*pb.Message{{Role: "user", Content: "hi"}}, Sampling: sp}
	}
	tests := []struct {
		name     string
		req      *pb.ChatRequest
		failCode codes.Code
		alone    bool
		want     codes.Code
	}{
		{"logprobs", chat(&pb.SamplingParams{Logprobs: true}), codes.Unavailable, false, codes.Unavailable},
		{"n > 1", chat(&pb.SamplingParams{N: 2}), codes.Unavailable, false, codes.Unavailable},
		{"tools", &pb.ChatRequest{Model: "m", Messages: []*pb.Message{{Role: "user", Content: "hi"}}, Tools: []*pb.Tool{{Name: "f"}}}, codes.Unavailable, false, codes.Unavailable},
		{"pinned", &pb.ChatRequest{Model: "m", Messages: []*pb.Message{{Role: "user", Content: "hi"}}, Routing: &pb.Routing{Node: "B"}}, codes.Unavailable, false, codes.Unavailable},
		{"json", &pb.ChatRequest{Model: "m", Messages: []*pb.Message{{Role: "user", Content: "hi"}},
			ResponseFormat: &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_OBJECT}}, codes.Unavailable, false, codes.Unavailable},
		{"the request's own error", chat(nil), codes.InvalidArgument, false, codes.InvalidArgument},
		{"nobody left", chat(nil), codes.Unavailable, true, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &scriptedPeer{id: "B", deltas: []string{"Hel"}, failCode: tt.failCode}
			c := &scriptedPeer{id: "C", deltas: []string{"lo"}}
			peers := []*scriptedPeer{b, c}
			if tt.alone {
				peers = peers[:1]
			}
			got := received{ids: map[string]bool{}}
			err := resumeMesh(t, peers...).Chat(t.Context(), tt.req, got.send, noLocal)
			if status.Code(err) != tt.want || c.calls() != 0 || got.text.String() != "Hel" {
				t.Fatalf("err %v, C called %d times, client got %q", err, c.calls(), got.text.String())
			}
			if tt.alone && !strings.Contains(err.Error(), "no other node could continue it") {
				t.Fatalf("err %v: want the reason nobody continued", err)
			}
		})
	}
}

// TestClientCancelIsNotContinued: a client that goes away mid-stream ends it; no node is asked
// to continue.
func TestClientCancelIsNotContinued(t *testing.T) {
	b := &scriptedPeer{id: "B", deltas: []string{"Hel", "lo"}, failCode: codes.Unavailable}
	c := &scriptedPeer{id: "C", deltas: []string{"!"}}
	r := resumeMesh(t, b, c)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := r.Chat(ctx, &pb.ChatRequest{Model: "m", Messages: []*pb.Message{{Role: "user", Content: "hi"}}},
		func(*pb.GenerateResponse) error { cancel(); return nil }, noLocal)
	if err == nil || c.calls() != 0 {
		t.Fatalf("err %v, C called %d times", err, c.calls())
	}
}

// TestFailureAtTheTokenLimit: a node that fails after generating max_tokens but before its
// Final leaves nothing to continue: the stream ends with finish reason length.
func TestFailureAtTheTokenLimit(t *testing.T) {
	b := &scriptedPeer{id: "B", deltas: []string{"a", "b"}, failCode: codes.Unavailable}
	c := &scriptedPeer{id: "C", deltas: []string{"c"}}
	got := received{ids: map[string]bool{}}
	req := &pb.ChatRequest{Model: "m", Messages: []*pb.Message{{Role: "user", Content: "hi"}}, Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(2))}}
	if err := resumeMesh(t, b, c).Chat(t.Context(), req, got.send, noLocal); err != nil {
		t.Fatal(err)
	}
	if c.calls() != 0 || got.text.String() != "ab" || got.final.GetFinishReason() != pb.FinishReason_FINISH_REASON_LENGTH ||
		got.final.GetUsage().GetCompletionTokens() != 2 || len(got.ids) != 1 {
		t.Fatalf("C called %d times; client got %q, final %v", c.calls(), got.text.String(), got.final)
	}
}

func ptr[T any](v T) *T { return &v }
