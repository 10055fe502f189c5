package node_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/requestid"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// logCapture collects the JSON log lines of the process (slog's default logger, shared by the
// in-process nodes), as the node logs them with log.format = json.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// lines returns the captured lines that carry request ID id, parsed.
func (c *logCapture) lines(t *testing.T, id string) []map[string]any {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(c.buf.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if m[requestid.LogKey] == id {
			out = append(out, m)
		}
	}
	return out
}

// captureJSONLogs sends the process's logs, as JSON with request IDs, to a capture until the test
// ends. Tests that call it must not run in parallel.
func captureJSONLogs(t *testing.T) *logCapture {
	c := &logCapture{}
	prev := slog.Default()
	slog.SetDefault(slog.New(requestid.LogHandler(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return c
}

// TestRequestIDFollowsAForwardedRequest: a chat sent to node B, which has no model, is served by
// node A; the client's X-Request-Id comes back, B's HTTP log line and A's gRPC log line for the
// forwarded call (the one whose caller is B) both carry it, and both nodes' metrics count their
// side: the forward on B, the call served to a peer on A. Then B pulls A's model, and A counts
// the blob bytes it served.
func TestRequestIDFollowsAForwardedRequest(t *testing.T) {
	logs := captureJSONLogs(t)
	a, b, _, _ := startMeshPair(t, []config.Model{tinyDecl("tiny")})
	bConn := grpcConn(t, b)
	announced := func(wantDigest bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			peers, _ := pb.NewNodeServiceClient(bConn).ListPeers(t.Context(), &pb.ListPeersRequest{})
			if ps := peers.GetPeers(); len(ps) == 1 && len(ps[0].GetCapability().GetModels()) == 1 {
				m := ps[0].GetCapability().GetModels()[0]
				if m.GetLoaded() && (!wantDigest || m.GetDigest() != "") {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("b never saw a announce tiny loaded (digest %v): %v", wantDigest, peers)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	announced(false)

	const id = "trace-me-4242"
	res, body := postChat(t, b.HTTPAddr(), `{"model":"tiny","max_tokens":4,"ignore_eos":true,"messages":[{"role":"user","content":"hi"}]}`,
		http.Header{requestid.Header: {id}})
	if res.StatusCode != http.StatusOK || res.Header.Get("Syn4pse-Served-By") != a.PeerID() {
		t.Fatalf("chat through b: %d, served by %q (a is %s): %s", res.StatusCode, res.Header.Get("Syn4pse-Served-By"), a.PeerID(), body)
	}
	if got := res.Header.Get(requestid.Header); got != id {
		t.Fatalf("response X-Request-Id %q, want %q", got, id)
	}

	var sawHTTP, sawForwarded bool
	deadline := time.Now().Add(30 * time.Second)
	for !sawHTTP || !sawForwarded {
		for _, line := range logs.lines(t, id) {
			switch line["msg"] {
			case "http request": // only b took HTTP
				sawHTTP = sawHTTP || line["route"] == chatRoute && line["status"] == float64(200)
			case "grpc request": // the call that came to a from b over the mesh
				sawForwarded = sawForwarded || line["method"] == "/syn4pse.v1.InferenceService/Chat" && line["peer"] == b.PeerID() && line["code"] == "OK"
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lines with request ID %s: HTTP on b %v, forwarded call on a %v; lines: %v", id, sawHTTP, sawForwarded, logs.lines(t, id))
		}
		time.Sleep(10 * time.Millisecond)
	}

	bm := scrapeUntil(t, b.HTTPAddr(), func(f map[string]*dto.MetricFamily) bool {
		v, _ := metricValue(f, "syn4pse_http_requests_total", "route", chatRoute)
		return v == 1
	})
	wantMetric(t, bm, 1, "syn4pse_forwarded_requests_total", "outcome", "ok")
	wantMetric(t, bm, 0, "syn4pse_forwarded_requests_total", "outcome", "peer_fault")
	wantMetric(t, bm, 1, "syn4pse_peers")
	am := scrape(t, a.HTTPAddr())
	wantMetric(t, am, 1, "syn4pse_peer_rpc_requests_total", "method", "/syn4pse.v1.InferenceService/Chat", "code", "OK")
	if v, _ := metricValue(am, "syn4pse_http_requests_total", "route", chatRoute); v != 0 {
		t.Errorf("a counts %v HTTP chats; it took none", v)
	}
	if v, ok := metricValue(am, "syn4pse_tokens_generated_total", "model", "tiny"); !ok || v != 4 {
		t.Errorf("a generated %v tokens (present %v), want the 4 it served", v, ok)
	}

	// b pulls the model from a over the blob protocol.
	announced(true)
	stream, err := pb.NewModelServiceClient(bConn).PullModel(t.Context(), &pb.PullModelRequest{Name: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("pull from a: %v", err)
		}
	}
	fi, err := os.Stat(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	// Counted as each write returns, so the last write may land a moment after b has it all.
	am = scrapeUntil(t, a.HTTPAddr(), func(f map[string]*dto.MetricFamily) bool {
		v, _ := metricValue(f, "syn4pse_peer_blob_bytes_served_total")
		return v >= float64(fi.Size())
	})
	wantMetric(t, am, float64(fi.Size()), "syn4pse_peer_blob_bytes_served_total")
	wantMetric(t, am, 1, "syn4pse_peer_blob_transfers_total")
}
