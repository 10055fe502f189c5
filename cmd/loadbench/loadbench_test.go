package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReadEvents(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"openai", "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n", []string{`{"a":1}`, `{"b":2}`}},
		{"stops at done", "data: 1\n\ndata: [DONE]\n\ndata: 2\n\n", []string{"1"}},
		{"no space, crlf-free comments and fields", ": ping\nevent: x\nid: 3\ndata:1\n\n", []string{"1"}},
		{"multi-line data joined", "data: a\ndata: b\n\n", []string{"a\nb"}},
		{"last event without blank line", "data: 1\n\ndata: 2", []string{"1", "2"}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := readEvents(strings.NewReader(tt.in), func(d []byte) error { got = append(got, string(d)); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPercentileMedianMean(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	tests := []struct {
		name      string
		got, want float64
	}{
		{"p50 nearest rank", percentile(xs, 50), 5},
		{"p95 nearest rank", percentile(xs, 95), 10},
		{"p10", percentile(xs, 10), 1},
		{"p100", percentile(xs, 100), 10},
		{"p95 of 8", percentile([]float64{1, 2, 3, 4, 5, 6, 7, 8}, 95), 8},
		{"p50 of 1", percentile([]float64{3}, 50), 3},
		{"median even", median(xs), 5.5},
		{"median odd", median([]float64{3, 1, 2}), 2},
		{"mean", mean(xs), 5.5},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) || !math.IsNaN(median(nil)) || !math.IsNaN(mean([]float64{math.NaN()})) {
		t.Error("no values should give NaN")
	}
	if got := median([]float64{math.NaN(), 1, 3}); got != 2 {
		t.Errorf("median skipping NaN = %v, want 2", got)
	}
	if xs[0] != 5 {
		t.Error("percentile sorted its argument in place")
	}
}

func TestGapsIn(t *testing.T) {
	base := time.Unix(0, 0)
	at := func(secs ...float64) []time.Time {
		var ts []time.Time
		for _, s := range secs {
			ts = append(ts, base.Add(time.Duration(s*float64(time.Second))))
		}
		return ts
	}
	events := at(1, 2, 3, 4, 9, 10)
	tests := []struct {
		name     string
		from, to float64
		straddle bool
		want     []float64
	}{
		{"before, without the first token's wait", 0, 4, false, []float64{1, 1, 1}},
		{"during a stall, straddling its end", 4.5, 8, true, []float64{5}},
		{"during, without straddle", 4.5, 8, false, nil},
		{"window up to the end", 3.5, 20, true, []float64{1, 5, 1}},
	}
	for _, tt := range tests {
		got := gapsIn(events, at(tt.from)[0], at(tt.to)[0], tt.straddle)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestStream runs the client against an httptest server that streams as OpenAI does (a fake:
// the servers under test are not ours to start here).
func TestStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, piece := range []string{"", "He", "llo", ""} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", piece)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n")
		fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	c := &client{http: srv.Client(), url: srv.URL, model: "m"}

	res, err := c.stream(t.Context(), "hi", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.events) != 2 || res.promptTokens != 7 || res.generated() != 3 || res.finishReason != "length" {
		t.Errorf("got %d events, usage %d/%d, finish %q; want 2 events, usage 7/3, length",
			len(res.events), res.promptTokens, res.completionTokens, res.finishReason)
	}
	if res.ttft() <= 0 || res.end() != res.finished || res.end().Before(res.events[1]) {
		t.Errorf("ttft %v, end %v, finished %v: want the end at the finish reason, after the text", res.ttft(), res.end(), res.finished)
	}
}

// TestStreamEndsAtOnce checks a stream whose first token ends it (a model that emits its end of
// turn at once): no error, its time to answer kept, nothing generated.
func TestStreamEndsAtOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
		fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":0}}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	c := &client{http: srv.Client(), url: srv.URL, model: "m"}
	res, err := c.stream(t.Context(), "hi", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.answered.IsZero() || res.generated() != 0 || res.finishReason != "stop" || !math.IsNaN(res.genRate()) {
		t.Errorf("answered %v, generated %d, finish %q, rate %v", res.answered, res.generated(), res.finishReason, res.genRate())
	}
}

func TestStreamErrors(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{"http status", `{"error":{"message":"model \"x\" not found"}}`, http.StatusNotFound, "404"},
		{"error event", "data: {\"error\":{\"message\":\"boom\"}}\n\n", http.StatusOK, "boom"},
		{"no answer", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: [DONE]\n\n", http.StatusOK, "without text or a finish reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			c := &client{http: srv.Client(), url: srv.URL, model: "m"}
			if _, err := c.stream(t.Context(), "hi", 3, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestStreamCanceled checks that a stream the bench stops itself keeps what arrived.
func TestStreamCanceled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	c := &client{http: srv.Client(), url: srv.URL, model: "m"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	res, err := c.stream(ctx, "hi", 100, func(n int) {
		if n == 3 {
			cancel()
		}
	})
	if err != nil || !res.canceled || len(res.events) < 3 {
		t.Errorf("err %v, canceled %v, %d events; want nil, true, >= 3", err, res.canceled, len(res.events))
	}
}

func TestPrompter(t *testing.T) {
	p := &prompter{tokensPerWord: 2, overhead: 10}
	r := round{n: 1, p: p, sz: sizes{streamPromptTokens: 30}}
	a, b := r.prompts("s", 110), r.prompts("s", 110)
	if a(0) != b(0) {
		t.Error("the same session of the same round gave two prompts: servers would not do the same work")
	}
	if a(0) == a(1) || a(0) == r.prompts("t", 110)(0) || a(0) == (round{n: 2, p: p, sz: r.sz}).prompts("s", 110)(0) {
		t.Error("two requests share a prompt: a server could reuse its cache")
	}
	if n := len(strings.Fields(a(0))); n != 51 { // "Request 1/s/0:" is two fields, then 49 words
		t.Errorf("first prompt has %d fields, want 51", n)
	}
	if n := len(strings.Fields(a(1))); n != 11 {
		t.Errorf("follow-up has %d fields, want 11", n)
	}
}

// TestSession checks that a session follows a request that ended early with another, until
// the tokens asked for are generated, as a user would keep a stream busy.
func TestSession(t *testing.T) {
	var requests []chatRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req chatRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Error(err)
		}
		requests = append(requests, req)
		n, finish := min(req.MaxTokens, 3), "stop" // every request ends after 3 tokens
		if n == req.MaxTokens {
			finish = "length"
		}
		for range n {
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n")
		}
		fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{},\"finish_reason\":%q}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":%d}}\n\n", finish, n)
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	c := &client{http: srv.Client(), url: srv.URL, model: "m"}
	r := round{n: 1, p: &prompter{tokensPerWord: 1}, sz: sizes{streamPromptTokens: 4}}

	results, err := c.session(t.Context(), r.prompts("s", 8), 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 || generatedIn(results) != 8 {
		t.Fatalf("%d requests generated %d tokens, want 3 and 8", len(results), generatedIn(results))
	}
	for i, want := range []int{8, 5, 2} {
		if requests[i].MaxTokens != want {
			t.Errorf("request %d asked for %d tokens, want %d", i, requests[i].MaxTokens, want)
		}
	}
	if requests[0].Messages[0].Content == requests[1].Messages[0].Content {
		t.Error("the follow-up repeated the first prompt")
	}
}
