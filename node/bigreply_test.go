package node_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/router"
	"github.com/ekisa-team/syn4pse/p2p"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// TestForwardedReplyOverFourMiB: a reply larger than gRPC's default 4 MiB receive limit (a large
// embeddings batch) comes back through the forwarding node, which takes peers' replies as large
// as server.grpc_max_message.
func TestForwardedReplyOverFourMiB(t *testing.T) {
	if testing.Short() {
		t.Skip("embeds 20,000 inputs")
	}
	a, b, _, _ := startMeshPair(t, []config.Model{embedDecl(t, "vec")})
	bConn := grpcConn(t, b)
	waitForPeerModel(t, bConn)

	inputs := make([]*pb.EmbedInput, 20000)
	for i := range inputs {
		inputs[i] = &pb.EmbedInput{Input: &pb.EmbedInput_Text{Text: "cat"}}
	}
	res, err := pb.NewInferenceServiceClient(bConn).Embed(t.Context(), &pb.EmbedRequest{Model: "vec", Inputs: inputs},
		grpc.MaxCallRecvMsgSize(64<<20))
	if err != nil {
		t.Fatalf("embedding 20,000 inputs through a peer: %v", err)
	}
	if size := proto.Size(res); size <= 4<<20 || len(res.GetEmbeddings()) != len(inputs) {
		t.Fatalf("reply of %d bytes with %d embeddings; want over 4 MiB and %d", size, len(res.GetEmbeddings()), len(inputs))
	}
	if res.GetServedBy() != a.PeerID() {
		t.Fatalf("served by %q, want the peer %s", res.GetServedBy(), a.PeerID())
	}
}

// TestForwardedReplyTooLarge: a reply over a gRPC message size limit is no busy peer. Node b
// (server.grpc_max_message 64 KiB) forwards embeddings to a (64 KiB too: it refuses to send a
// larger reply) and c (the default 64 MiB: it sends, and b refuses to receive). Each way the
// request ends at the first peer tried, counted too_large, with OUT_OF_RANGE (HTTP 413) naming
// the key; a request of a size that fits goes on being served.
func TestForwardedReplyTooLarge(t *testing.T) {
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	start := func(name string, limit int64, bootstrap []string, models ...config.Model) *node.Node {
		cfg := meshConfig(t, key, name, bootstrap, models...)
		cfg.Server.Limits.GRPCMaxMessage = limit
		n, err := node.Start(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown(context.WithoutCancel(t.Context())) })
		return n
	}
	logs := captureLogs(t)
	const small = 64 << 10
	a := start("a", small, nil, embedDecl(t, "vec"))
	st, err := pb.NewNodeServiceClient(grpcConn(t, a)).MeshStatus(t.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := start("c", 0, st.GetListenAddrs(), embedDecl(t, "vec"))
	b := start("b", small, st.GetListenAddrs())
	bConn := grpcConn(t, b)
	deadline := time.Now().Add(time.Minute)
	for {
		peers, _ := pb.NewNodeServiceClient(bConn).ListPeers(t.Context(), &pb.ListPeersRequest{})
		withModel := 0
		for _, p := range peers.GetPeers() {
			if len(p.GetCapability().GetModels()) == 1 {
				withModel++
			}
		}
		if withModel == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never saw the model of both a and c: %v", peers)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// 400 embeddings of 64 floats: about 100 KiB.
	embed := func(n int, pin string) (*pb.EmbedResponse, error) {
		inputs := make([]*pb.EmbedInput, n)
		for i := range inputs {
			inputs[i] = &pb.EmbedInput{Input: &pb.EmbedInput_Text{Text: "cat"}}
		}
		req := &pb.EmbedRequest{Model: "vec", Inputs: inputs}
		if pin != "" {
			req.Routing = &pb.Routing{Node: pin}
		}
		return pb.NewInferenceServiceClient(bConn).Embed(t.Context(), req, grpc.MaxCallRecvMsgSize(64<<20))
	}
	wantTooLarge := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "server.grpc_max_message") {
			t.Fatalf("%s: %v; want OUT_OF_RANGE naming server.grpc_max_message", what, err)
		}
	}
	_, err = embed(400, "")
	wantTooLarge("either peer", err)
	_, err = embed(400, a.PeerID())
	wantTooLarge("a, over its send limit", err)
	if !strings.Contains(err.Error(), "trying to send message larger than max") {
		t.Errorf("a's refusal: %v; want its send limit", err)
	}
	// a logs it as a reply it did not send, not as a request it refused.
	if !strings.Contains(logs.String(), "reply not sent: over a limit") {
		t.Errorf("a's log does not say it did not send the reply:\n%s", logs.String())
	}
	_, err = embed(400, c.PeerID())
	wantTooLarge("c, over b's receive limit", err)
	if !strings.Contains(err.Error(), "received message larger than max") {
		t.Errorf("c's reply: %v; want b's receive limit", err)
	}

	body := `{"model":"vec","input":[` + strings.TrimSuffix(strings.Repeat(`"cat",`, 400), ",") + `]}`
	res, err := http.Post("http://"+b.HTTPAddr()+"/v1/embeddings", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "server.grpc_max_message") {
		t.Fatalf("HTTP embeddings through b: %d %s; want 413 naming server.grpc_max_message", res.StatusCode, msg)
	}

	if res, err := embed(10, ""); err != nil || len(res.GetEmbeddings()) != 10 {
		t.Fatalf("10 embeddings through b after the refusals: %v, %v", res, err)
	}
	families := scrapeUntil(t, b.HTTPAddr(), func(f map[string]*dto.MetricFamily) bool {
		v, _ := metricValue(f, "syn4pse_forwarded_requests_total", "outcome", router.ForwardOK)
		return v == 1
	})
	for _, o := range router.ForwardOutcomes {
		want := 0.0
		switch o {
		case router.ForwardTooLarge:
			want = 4 // one forward per request: no second peer tried
		case router.ForwardOK:
			want = 1
		}
		wantMetric(t, families, want, "syn4pse_forwarded_requests_total", "outcome", o)
	}
}
