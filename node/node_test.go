package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// modelPath is a generated tiny llama model shared by the tests of this package.
var modelPath string

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	// The backends as a node configured with SYN4PSE_ENGINE_LIBRARY_PATH loads them (`task test`
	// points it at bin/lib); every in-process node then shares them.
	if dir := os.Getenv("SYN4PSE_ENGINE_LIBRARY_PATH"); dir != "" {
		if _, err := llamacpp.LoadBackends(llamacpp.BackendOptions{LibraryPath: []string{dir}}); err != nil {
			fmt.Fprintln(os.Stderr, "native backends:", err)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "syn4pse-node-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modelPath = filepath.Join(dir, "tiny.gguf")
	if err := tinygguf.Write(modelPath, tinygguf.Options{Arch: "llama", Seed: 3}); err != nil {
		fmt.Fprintln(os.Stderr, "generate model:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tinyDecl declares the generated model under name.
func tinyDecl(name string) config.Model {
	return config.Model{Name: name, Modality: "llm", Engine: "llama_cpp", Path: modelPath, Enabled: true,
		Threads: 1, BatchSize: 512, Parallel: 1, FlashAttention: "auto", ContextLength: 256,
		Declared: "test [models." + name + "]"}
}

// startNode runs an in-process node on free loopback ports until the test ends.
func startNode(t *testing.T, decls ...config.Model) *node.Node {
	t.Helper()
	n, err := startNodeFor(t.Context(), t.TempDir(), decls)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n
}

func startNodeFor(ctx context.Context, dataDir string, decls []config.Model) (*node.Node, error) {
	return node.Start(ctx, &config.Config{
		DataDir:   dataDir,
		Server:    config.Server{Host: "127.0.0.1", ShutdownTimeout: 10 * time.Second},
		Log:       config.Log{Level: "info", Format: "text"},
		Models:    decls,
		Lifecycle: config.Lifecycle{KeepAlive: 5 * time.Minute},
	})
}

type grpcClientConn = grpc.ClientConn

func newConn(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
}

func grpcConn(t *testing.T, n *node.Node) *grpc.ClientConn {
	t.Helper()
	conn, err := newConn(n.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// collect reads a generation stream to its end.
func collect(stream grpc.ServerStreamingClient[pb.GenerateResponse]) (string, *pb.Final, error) {
	var text strings.Builder
	var final *pb.Final
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), final, nil
		}
		if err != nil {
			return text.String(), final, err
		}
		if final != nil {
			return "", nil, fmt.Errorf("event after the final one: %v", ev)
		}
		text.WriteString(ev.GetDelta().GetText())
		final = ev.GetFinal()
	}
}

func TestGRPCChatStreamAndHealth(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	conn := grpcConn(t, n)

	hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", hc, err)
	}

	maxTokens := int32(12)
	stream, err := pb.NewInferenceServiceClient(conn).Chat(t.Context(), &pb.ChatRequest{
		Model:    "tiny",
		Messages: []*pb.Message{{Role: "user", Content: "Hello!"}},
		Sampling: &pb.SamplingParams{MaxTokens: &maxTokens, IgnoreEos: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	text, final, err := collect(stream)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if final == nil || final.GetUsage().GetCompletionTokens() == 0 || final.GetUsage().GetCompletionTokens() > maxTokens {
		t.Fatalf("final = %v", final)
	}
	if final.GetServedBy() == "" || final.GetTimings().GetGenerationTokensPerSecond() <= 0 {
		t.Fatalf("final lacks served_by or timings: %v", final)
	}
	t.Logf("chat over gRPC: %q, %v", text, final)

	info, err := pb.NewNodeServiceClient(conn).GetInfo(t.Context(), &pb.GetInfoRequest{})
	if err != nil || !strings.Contains(info.GetEngineInfo()["llama_cpp"], "CPU") {
		t.Fatalf("GetInfo = %v, %v", info, err)
	}
}

func TestGRPCErrors(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	client := pb.NewInferenceServiceClient(grpcConn(t, n))
	long := strings.Repeat("hello world ", 300)
	tests := []struct {
		name string
		req  *pb.ChatRequest
		code codes.Code
		msg  string
	}{
		{"unknown model", &pb.ChatRequest{Model: "nope", Messages: []*pb.Message{{Role: "user", Content: "hi"}}}, codes.NotFound, "available: tiny"},
		{"no messages", &pb.ChatRequest{Model: "tiny"}, codes.InvalidArgument, "messages"},
		{"bad role", &pb.ChatRequest{Model: "tiny", Messages: []*pb.Message{{Role: "robot", Content: "hi"}}}, codes.InvalidArgument, "role"},
		{"prompt too long", &pb.ChatRequest{Model: "tiny", Messages: []*pb.Message{{Role: "user", Content: long}}}, codes.InvalidArgument, "256"},
		{"bad schema", &pb.ChatRequest{Model: "tiny", Messages: []*pb.Message{{Role: "user", Content: "hi"}},
			ResponseFormat: &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_SCHEMA, JsonSchema: "{not json"}}, codes.InvalidArgument, "json_schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.Chat(t.Context(), tt.req)
			if err == nil {
				_, _, err = collect(stream)
			}
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.code, tt.msg)
			}
		})
	}
	// The node still serves.
	stream, err := client.Chat(t.Context(), &pb.ChatRequest{Model: "tiny", Messages: []*pb.Message{{Role: "user", Content: "hi"}}, Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(2))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(stream); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenModelsDoNotStopTheNode(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.gguf")
	if err := os.WriteFile(corrupt, []byte("GGUF\x03\x00\x00\x00garbage garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := tinyDecl("missing")
	missing.Path = filepath.Join(dir, "missing.gguf")
	broken := tinyDecl("corrupt")
	broken.Path = corrupt
	n := startNode(t, tinyDecl("good"), missing, broken)
	conn := grpcConn(t, n)

	// Asking for a model waits for it to load, so by then the catalog has settled.
	stream, err := pb.NewInferenceServiceClient(conn).Complete(t.Context(), &pb.CompleteRequest{Model: "good", Prompt: "Hi", Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(3))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(stream); err != nil {
		t.Fatalf("good model: %v", err)
	}
	for _, name := range []string{"missing", "corrupt"} {
		stream, err := pb.NewInferenceServiceClient(conn).Complete(t.Context(), &pb.CompleteRequest{Model: name, Prompt: "Hi"})
		if err == nil {
			_, _, err = collect(stream)
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("%s: err = %v, want Unavailable", name, err)
		}
	}
	list, err := pb.NewModelServiceClient(conn).ListModels(t.Context(), &pb.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]*pb.ModelInfo{}
	for _, m := range list.GetModels() {
		states[m.GetName()] = m
	}
	if states["good"].GetState() != pb.ModelState_MODEL_STATE_LOADED || states["good"].GetDetails().GetArchitecture() != "llama" {
		t.Errorf("good: %v", states["good"])
	}
	if m := states["missing"]; m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE || !strings.Contains(m.GetUnavailableReason(), "does not exist") {
		t.Errorf("missing: %v", m)
	}
	if m := states["corrupt"]; m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE || m.GetUnavailableReason() == "" {
		t.Errorf("corrupt: %v", m)
	}
	health, err := pb.NewNodeServiceClient(conn).Health(t.Context(), &pb.HealthRequest{})
	if err != nil || health.GetModelsReady() != 1 || health.GetModelsUnavailable() != 2 {
		t.Errorf("health = %v, %v", health, err)
	}
}

func TestShutdownLetsStreamsFinish(t *testing.T) {
	cfg := &config.Config{
		DataDir:   t.TempDir(),
		Server:    config.Server{Host: "127.0.0.1", ShutdownTimeout: 30 * time.Second},
		Models:    []config.Model{tinyDecl("tiny")},
		Lifecycle: config.Lifecycle{KeepAlive: 5 * time.Minute},
	}
	n, err := node.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn := grpcConn(t, n)
	stream, err := pb.NewInferenceServiceClient(conn).Complete(t.Context(), &pb.CompleteRequest{
		Model: "tiny", Prompt: "Once", Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(100)), IgnoreEos: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // generation is running
		t.Fatal(err)
	}
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shutdown <- n.Shutdown(ctx)
	}()
	_, final, err := collect(stream)
	if err != nil || final == nil {
		t.Fatalf("stream cut by shutdown: final=%v err=%v", final, err)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
