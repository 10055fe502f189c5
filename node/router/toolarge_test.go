package router

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// TestEventOverSizeLimitIsTooLarge: a peer's stream event over this node's receive limit, after
// text reached the client, ends the stream with OUT_OF_RANGE naming server.grpc_max_message;
// it is counted too_large, and the stream is not continued on the other peer, which would send
// the same event.
func TestEventOverSizeLimitIsTooLarge(t *testing.T) {
	b := &scriptedPeer{id: "B", deltas: []string{"Once", strings.Repeat(" upon a time", 200)}}
	c := &scriptedPeer{id: "C", deltas: []string{"Once", " upon"}}
	r := resumeMesh(t, b, c)
	bConn, err := grpc.NewClient(b.serve(t).Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<10)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bConn.Close() })
	dial := r.Dial
	r.Dial = func(ctx context.Context, peer string) (grpc.ClientConnInterface, error) {
		if peer == "B" {
			return bConn, nil
		}
		return dial(ctx, peer)
	}
	var outcomes []string
	r.OnForward = func(o string) { outcomes = append(outcomes, o) }

	got := &received{ids: map[string]bool{}}
	err = r.Chat(t.Context(), &pb.ChatRequest{Model: "m", Messages: []*pb.Message{{Role: "user", Content: "a story"}}}, got.send, nil)
	if st := status.Convert(err); st.Code() != codes.OutOfRange || !strings.Contains(st.Message(), "server.grpc_max_message") {
		t.Fatalf("stream with an event over the limit: %v; want OUT_OF_RANGE naming server.grpc_max_message", err)
	}
	if got.text.String() != "Once" {
		t.Errorf("client got %q; want only the event before the large one", got.text.String())
	}
	if c.calls() != 0 {
		t.Errorf("the stream was continued on C (%d calls)", c.calls())
	}
	if want := []string{ForwardTooLarge}; !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
}
