package node_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/p2p"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// meshConfig is a node on loopback in the mesh of key, dialling bootstrap.
func meshConfig(b testing.TB, key p2p.SwarmKey, name string, bootstrap []string, models ...config.Model) *config.Config {
	dir := b.TempDir()
	if err := p2p.SaveSwarmKey(filepath.Join(dir, node.SwarmKeyFile), key); err != nil {
		b.Fatal(err)
	}
	return &config.Config{
		DataDir: dir,
		Server:  config.Server{Host: "127.0.0.1", ShutdownTimeout: 5 * time.Second},
		P2P: config.P2P{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: bootstrap, Name: name,
			AnnounceInterval: 500 * time.Millisecond, PeerTTL: 5 * time.Second},
		Router:    config.Router{MaxHops: 1},
		Models:    models,
		Lifecycle: config.Lifecycle{KeepAlive: 5 * time.Minute},
	}
}

// BenchmarkForwarding measures time to first token and generation speed of the same request
// served locally by node A and forwarded to A through node B, alternating, in one process.
func BenchmarkForwarding(b *testing.B) {
	path := os.Getenv("SYN4PSE_BENCH_MODEL")
	if path == "" {
		path = filepath.Join(b.TempDir(), "bench.gguf")
		if err := tinygguf.Write(path, tinygguf.Options{Size: "bench", Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		b.Fatal(err)
	}
	decl := config.Model{Name: "x", Modality: "llm", Engine: "llama_cpp", Path: path, Enabled: true,
		BatchSize: 512, Parallel: 1, FlashAttention: "auto", ContextLength: 512}
	a, err := node.Start(b.Context(), meshConfig(b, key, "a", nil, decl))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	aConn := grpcConnB(b, a.GRPCAddr())
	st, err := pb.NewNodeServiceClient(aConn).MeshStatus(b.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		b.Fatal(err)
	}
	bn, err := node.Start(b.Context(), meshConfig(b, key, "b", st.GetListenAddrs()))
	if err != nil {
		b.Fatal(err)
	}
	defer bn.Shutdown(context.Background())
	bConn := grpcConnB(b, bn.GRPCAddr())
	for {
		peers, _ := pb.NewNodeServiceClient(bConn).ListPeers(b.Context(), &pb.ListPeersRequest{})
		if len(peers.GetPeers()) == 1 && len(peers.GetPeers()[0].GetCapability().GetModels()) == 1 && peers.GetPeers()[0].GetCapability().GetModels()[0].GetLoaded() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	run := func(conn pb.InferenceServiceClient, prompt string) (ttft time.Duration, tps float64) {
		start := time.Now()
		stream, err := conn.Complete(b.Context(), &pb.CompleteRequest{Model: "x", Prompt: prompt,
			Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(32)), IgnoreEos: true, Temperature: ptr(float32(0))}})
		if err != nil {
			b.Fatal(err)
		}
		var first, last time.Time
		tokens := 0
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if ev.GetDelta() != nil {
				if first.IsZero() {
					first = time.Now()
				}
				last = time.Now()
			}
			if f := ev.GetFinal(); f != nil {
				tokens = int(f.GetUsage().GetCompletionTokens())
			}
		}
		return first.Sub(start), float64(tokens-1) / last.Sub(first).Seconds()
	}
	local, forwarded := pb.NewInferenceServiceClient(aConn), pb.NewInferenceServiceClient(bConn)
	var ttftLocal, ttftFwd []time.Duration
	var tpsLocal, tpsFwd float64
	b.ResetTimer()
	for i := range b.N {
		// Both prompts have the same tokens but the first, so neither reuses the other's
		// cached prefix and both cost the same to evaluate.
		const rest = " the history of the world, chapter one: the cat sat on the mat"
		t1, r1 := run(local, string(rune('a'+(2*i)%26))+rest)
		t2, r2 := run(forwarded, string(rune('a'+(2*i+1)%26))+rest)
		ttftLocal, ttftFwd = append(ttftLocal, t1), append(ttftFwd, t2)
		tpsLocal += r1
		tpsFwd += r2
	}
	b.ReportMetric(float64(median(ttftLocal).Microseconds())/1000, "ttft_local_ms")
	b.ReportMetric(float64(median(ttftFwd).Microseconds())/1000, "ttft_fwd_ms")
	b.ReportMetric(float64((median(ttftFwd)-median(ttftLocal)).Microseconds())/1000, "ttft_added_ms")
	b.ReportMetric(tpsFwd/tpsLocal, "tps_fwd/local")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func grpcConnB(b *testing.B, addr string) *grpcClientConn {
	b.Helper()
	conn, err := newConn(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}
