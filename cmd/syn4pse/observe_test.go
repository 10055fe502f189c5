package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// logLines returns the JSON log lines of a node process that carry request ID id (the process
// also writes other lines: llama.cpp's own, say).
func (n *meshNode) logLines(id string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(n.log.String(), "\n") {
		var m map[string]any
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["request_id"] == id {
			out = append(out, m)
		}
	}
	return out
}

// TestRequestIDAcrossNodeProcesses: two `syn4pse serve` processes logging JSON; a chat sent to
// beta with an X-Request-Id is served by alpha, and grepping each process's log for the ID finds
// the request on both: beta's HTTP line, alpha's line for the call beta forwarded. Beta's
// /metrics counts the forward.
func TestRequestIDAcrossNodeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two node processes")
	}
	a := newMeshNode(t, "alpha", map[string]string{"x": writeModel(t, "tiny")})
	b := newMeshNode(t, "beta", nil)
	for _, n := range []*meshNode{a, b} {
		n.declare("[log]\nformat = \"json\"")
	}
	formMesh(t, a, b)
	b.waitFor("alpha's model in beta's table", func() bool { return len(b.peers("x")) == 1 })

	const id = "cli-trace-0001"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", b.httpPort),
		strings.NewReader(`{"model":"x","max_tokens":4,"ignore_eos":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", id)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Request-Id") != id || res.Header.Get("Syn4pse-Served-By") != a.peerID() {
		t.Fatalf("chat through beta: %d, request ID %q, served by %q: %s", res.StatusCode, res.Header.Get("X-Request-Id"),
			res.Header.Get("Syn4pse-Served-By"), body)
	}

	bID := b.peerID()
	b.waitFor("beta's log line for the request", func() bool {
		for _, l := range b.logLines(id) {
			if l["msg"] == "http request" && l["status"] == float64(200) {
				return true
			}
		}
		return false
	})
	a.waitFor("alpha's log line for the forwarded call", func() bool {
		for _, l := range a.logLines(id) {
			if l["msg"] == "grpc request" && l["peer"] == bID && l["method"] == "/syn4pse.v1.InferenceService/Chat" {
				return true
			}
		}
		return false
	})

	forwardedOK := b.forwardOutcomes()["ok"]
	if forwardedOK != 1 {
		t.Fatalf("beta counts %v forwards that went well, want 1", forwardedOK)
	}
}

// forwardOutcomes scrapes n's /metrics and returns its forwarded requests by outcome.
func (n *meshNode) forwardOutcomes() map[string]float64 {
	n.t.Helper()
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", n.httpPort))
	if err != nil {
		n.t.Fatal(err)
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		n.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range families["syn4pse_forwarded_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" {
				out[l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
