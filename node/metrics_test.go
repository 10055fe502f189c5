package node_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/metadata"

	"github.com/ekisa-team/syn4pse/node/requestid"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// scrape GETs a node's /metrics and parses it with Prometheus' own text parser.
func scrape(t *testing.T, httpAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET /metrics: %d %s: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// metricValue is the value of the series of family name with labels (label pairs: name, value,
// ...): a counter's or gauge's value, a histogram's sample count. ok is false without such a series.
func metricValue(families map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// wantMetric fails unless the series exists with value want.
func wantMetric(t *testing.T, families map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	if got, ok := metricValue(families, name, labels...); !ok || got != want {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
	}
}

// scrapeUntil scrapes until ready says the counts it waits for are in: a request is counted
// when its handler returns, a moment after the client has read the whole response.
func scrapeUntil(t *testing.T, httpAddr string, ready func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		families := scrape(t, httpAddr)
		if ready(families) {
			return families
		}
		if time.Now().After(deadline) {
			t.Fatal("the metrics never counted the requests made")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// postChat posts a chat request body and returns the response, its body read.
func postChat(t *testing.T, httpAddr, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+httpAddr+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

const chatRoute = "POST /v1/chat/completions"

// TestMetricsCountRequestsAndTokens: requests of every kind move the counters by exactly what
// was asked, the tokens counted are the tokens the responses report, and the model's gauges
// are there; all read through a real scrape and Prometheus' parser.
func TestMetricsCountRequestsAndTokens(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	addr := n.HTTPAddr()

	var tokens int64
	for i := range 3 {
		body := fmt.Sprintf(`{"model":"tiny","max_tokens":%d,"ignore_eos":true,"messages":[{"role":"user","content":"hi"}]}`, 3+i)
		res, b := postChat(t, addr, body, nil)
		var out struct {
			Usage struct {
				CompletionTokens int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if res.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.Usage.CompletionTokens == 0 {
			t.Fatalf("chat %d: %d %s", i, res.StatusCode, b)
		}
		if id := res.Header.Get(requestid.Header); !requestid.Valid(id) {
			t.Fatalf("response request ID %q", id)
		}
		tokens += out.Usage.CompletionTokens
	}
	if res, b := postChat(t, addr, `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown model: %d %s", res.StatusCode, b)
	}
	for _, id := range []string{"client-chose-this.1", "bad id with spaces"} {
		res, b := postChat(t, addr, `{"model":`, http.Header{requestid.Header: {id}})
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("broken JSON: %d %s", res.StatusCode, b)
		}
		if got := res.Header.Get(requestid.Header); (got == id) != requestid.Valid(id) || !requestid.Valid(got) {
			t.Fatalf("sent request ID %q, got back %q", id, got)
		}
	}
	res, err := http.Get("http://" + addr + "/no/such/route")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown route: %d", res.StatusCode)
	}

	// gRPC: the caller's request ID comes back in the response header, and the call is counted.
	ctx := metadata.AppendToOutgoingContext(t.Context(), requestid.MetadataKey, "grpc-caller-7")
	maxTokens := int32(4)
	var header metadata.MD
	stream, err := pb.NewInferenceServiceClient(grpcConn(t, n)).Chat(ctx, &pb.ChatRequest{Model: "tiny",
		Messages: []*pb.Message{{Role: "user", Content: "hi"}}, Sampling: &pb.SamplingParams{MaxTokens: &maxTokens, IgnoreEos: true}})
	if err != nil {
		t.Fatal(err)
	}
	_, final, err := collect(stream)
	if err != nil {
		t.Fatal(err)
	}
	tokens += int64(final.GetUsage().GetCompletionTokens())
	if header, err = stream.Header(); err != nil || len(header.Get(requestid.MetadataKey)) != 1 || header.Get(requestid.MetadataKey)[0] != "grpc-caller-7" {
		t.Fatalf("gRPC response header %v, %v", header, err)
	}

	families := scrapeUntil(t, addr, func(f map[string]*dto.MetricFamily) bool {
		v, _ := metricValue(f, "syn4pse_http_request_duration_seconds", "route", chatRoute)
		w, _ := metricValue(f, "syn4pse_grpc_requests_total", "method", "/syn4pse.v1.InferenceService/Chat")
		u, _ := metricValue(f, "syn4pse_http_requests_total", "route", "/")
		return v == 6 && w == 1 && u == 1
	})
	wantMetric(t, families, 3, "syn4pse_http_requests_total", "route", chatRoute, "code", "200")
	wantMetric(t, families, 1, "syn4pse_http_requests_total", "route", chatRoute, "code", "404")
	wantMetric(t, families, 2, "syn4pse_http_requests_total", "route", chatRoute, "code", "400")
	wantMetric(t, families, 1, "syn4pse_http_requests_total", "route", "/", "code", "404")
	wantMetric(t, families, 6, "syn4pse_http_request_duration_seconds", "route", chatRoute)
	wantMetric(t, families, 1, "syn4pse_grpc_requests_total", "method", "/syn4pse.v1.InferenceService/Chat", "code", "OK")
	wantMetric(t, families, float64(tokens), "syn4pse_tokens_generated_total", "model", "tiny")
	wantMetric(t, families, 1, "syn4pse_model_events_total", "model", "tiny", "event", "load")
	wantMetric(t, families, 0, "syn4pse_model_events_total", "model", "tiny", "event", "unload")
	wantMetric(t, families, 1, "syn4pse_model_loaded", "model", "tiny")
	wantMetric(t, families, 1, "syn4pse_model_slots", "model", "tiny")
	wantMetric(t, families, 0, "syn4pse_model_slots_in_use", "model", "tiny")
	wantMetric(t, families, 0, "syn4pse_model_queue_depth", "model", "tiny")
	wantMetric(t, families, 0, "syn4pse_peers")
	wantMetric(t, families, 0, "syn4pse_forwarded_requests_total", "outcome", "ok")
	for _, name := range []string{"syn4pse_model_memory_bytes", "syn4pse_model_tokens_per_second", "syn4pse_prompt_tokens_total"} {
		if v, ok := metricValue(families, name, "model", "tiny"); !ok || v <= 0 {
			t.Errorf("%s{model=tiny} = %v (present %v), want > 0", name, v, ok)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := families[name]; !ok {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
	for name := range families {
		if f := families[name]; strings.HasPrefix(name, "syn4pse_http_") {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "route" && strings.Contains(l.GetValue(), "/no/such") {
						t.Errorf("%s has a raw path as its route label: %v", name, m)
					}
				}
			}
		}
	}

	// A model's work keeps counting across an unload, and the unload is counted.
	if _, err := pb.NewModelServiceClient(grpcConn(t, n)).UnloadModel(t.Context(), &pb.UnloadModelRequest{Name: "tiny"}); err != nil {
		t.Fatal(err)
	}
	families = scrape(t, addr)
	wantMetric(t, families, 1, "syn4pse_model_events_total", "model", "tiny", "event", "unload")
	wantMetric(t, families, 0, "syn4pse_model_loaded", "model", "tiny")
	wantMetric(t, families, float64(tokens), "syn4pse_tokens_generated_total", "model", "tiny")
	if _, ok := metricValue(families, "syn4pse_model_slots", "model", "tiny"); ok {
		t.Error("an unloaded model still has slots")
	}
}
