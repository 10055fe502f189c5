package node_test

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/ekisa-team/syn4pse/node/config"
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
	deadline := time.Now().Add(time.Minute)
	for {
		peers, _ := pb.NewNodeServiceClient(bConn).ListPeers(t.Context(), &pb.ListPeersRequest{})
		if ps := peers.GetPeers(); len(ps) == 1 && len(ps[0].GetCapability().GetModels()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never saw a's model: %v", peers)
		}
		time.Sleep(50 * time.Millisecond)
	}

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
