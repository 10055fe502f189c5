package node_test

import (
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/router"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// TestClientCancelWhileForwarded: a gRPC client that goes away while b relays a's stream is
// counted as the forward outcome canceled on b (not broken, not a fault held against a), and
// the cancellation reaches a, which stops generating.
func TestClientCancelWhileForwarded(t *testing.T) {
	const maxTokens = 4000
	decl := tinyDecl("tiny")
	decl.ContextLength = maxTokens + 96 // room for far more tokens than the client waits for
	a, b, _, _ := startMeshPair(t, []config.Model{decl})
	bConn := grpcConn(t, b)
	waitForPeerModel(t, bConn)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := pb.NewInferenceServiceClient(bConn).Chat(ctx, &pb.ChatRequest{Model: "tiny",
		Messages: []*pb.Message{{Role: "user", Content: "Tell me a long story"}},
		Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(maxTokens)), IgnoreEos: true}})
	if err != nil {
		t.Fatal(err)
	}
	deltas := 0
	for deltas < 2 {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream through b ended before the client canceled: %v", err)
		}
		if ev.GetServedBy() != "" && ev.GetServedBy() != a.PeerID() {
			t.Fatalf("served by %q, want the peer %s", ev.GetServedBy(), a.PeerID())
		}
		if ev.GetDelta() != nil {
			deltas++
		}
		if ev.GetFinal() != nil {
			t.Fatalf("the stream ended before the client canceled: %v", ev)
		}
	}
	cancel()
	for { // events already received may still come out first
		ev, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Canceled {
				t.Fatalf("Recv after cancel: %v, want Canceled", err)
			}
			break
		}
		if ev.GetFinal() != nil {
			t.Fatalf("the stream ended after the client canceled: %v", ev)
		}
	}

	bm := scrapeUntil(t, b.HTTPAddr(), func(f map[string]*dto.MetricFamily) bool {
		v, _ := metricValue(f, "syn4pse_forwarded_requests_total", "outcome", router.ForwardCanceled)
		return v == 1
	})
	for _, o := range router.ForwardOutcomes {
		if v, _ := metricValue(bm, "syn4pse_forwarded_requests_total", "outcome", o); o != router.ForwardCanceled && v != 0 {
			t.Errorf("forward outcome %s counted %v times; only canceled happened", o, v)
		}
	}
	// a saw its peer's call canceled, and stopped short of max_tokens.
	am := scrapeUntil(t, a.HTTPAddr(), func(f map[string]*dto.MetricFamily) bool {
		v, _ := metricValue(f, "syn4pse_peer_rpc_requests_total", "method", "/syn4pse.v1.InferenceService/Chat", "code", "Canceled")
		return v == 1
	})
	tokens, _ := metricValue(am, "syn4pse_tokens_generated_total", "model", "tiny")
	t.Logf("a generated %v of %d tokens before the cancellation stopped it", tokens, maxTokens)
	if tokens >= maxTokens {
		t.Errorf("a generated %v tokens: the cancellation never reached it", tokens)
	}
}
