package api_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/enginetest"
	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/modelstest"
	"github.com/ekisa-team/syn4pse/node/router"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// TestFullQueueIsResourceExhaustedAtOnce runs the inference service on a real gRPC server over
// loopback, with the fake engine (engine/enginetest) holding requests at its gate.
func TestFullQueueIsResourceExhaustedAtOnce(t *testing.T) {
	eng := &enginetest.Engine{Gate: make(chan struct{})}
	catalog := fakeCatalog(t, eng, models.Options{MaxQueue: 1})
	client := serveGRPC(t, &api.InferenceService{Models: catalog, NodeID: "self", Router: &router.Router{Self: "self", MaxHops: 1,
		Local: func(string) router.LocalModel { return router.LocalModel{Declared: true, Loaded: true} }}})

	running := chat(t.Context(), client, "held")
	modelstest.WaitEngine(t, catalog, "echo", 1, 0)
	queued := chat(t.Context(), client, "held")
	modelstest.WaitEngine(t, catalog, "echo", 1, 1)

	refused := <-chat(t.Context(), client, "one too many")
	if st := status.Convert(refused.err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "retry later") {
		t.Fatalf("past the queue: %v, want RESOURCE_EXHAUSTED saying what to do", refused.err)
	}
	select {
	case r := <-running:
		t.Fatalf("the running request ended at the gate: %+v", r)
	case r := <-queued:
		t.Fatalf("the queued request ended: %+v", r)
	default:
	}

	close(eng.Gate)
	for _, ch := range []<-chan chatResult{running, queued} {
		if r := <-ch; r.err != nil || r.text != " held" {
			t.Fatalf("a held request after the gate opened: %+v", r)
		}
	}
	if r := <-chat(t.Context(), client, "still serving"); r.err != nil || r.text != " still serving" {
		t.Fatalf("after the queue emptied: %+v", r)
	}
}

// fakeCatalog is a catalog of one model, "echo", of one slot, on eng.
func fakeCatalog(t *testing.T, eng *enginetest.Engine, opts models.Options) *models.Manager {
	t.Helper()
	path := filepath.Join(t.TempDir(), "echo.gguf")
	if err := os.WriteFile(path, []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	var registry engine.Registry
	registry.RegisterLLM(eng)
	catalog := models.New(&registry, []models.Decl{{Name: "echo", Modality: "llm", Engine: engine.DefaultEngine, Path: path,
		Enabled: true, Options: engine.LoadOptions{Parallel: 1}}}, opts)
	t.Cleanup(func() { catalog.Close() })
	return catalog
}

// serveGRPC serves svc on a loopback port and returns a client of it.
func serveGRPC(t *testing.T, svc *api.InferenceService) pb.InferenceServiceClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterInferenceServiceServer(srv, svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewInferenceServiceClient(conn)
}

type chatResult struct {
	text string
	err  error
}

// chat sends one chat request and reads its stream off the test's goroutine.
func chat(ctx context.Context, client pb.InferenceServiceClient, content string) <-chan chatResult {
	out := make(chan chatResult, 1)
	go func() {
		stream, err := client.Chat(ctx, &pb.ChatRequest{Model: "echo", Messages: []*pb.Message{{Role: "user", Content: content}}})
		if err != nil {
			out <- chatResult{err: err}
			return
		}
		var text strings.Builder
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				out <- chatResult{text: text.String()}
				return
			}
			if err != nil {
				out <- chatResult{text: text.String(), err: err}
				return
			}
			text.WriteString(ev.GetDelta().GetText())
		}
	}()
	return out
}
