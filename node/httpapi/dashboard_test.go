package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine/enginetest"
	"github.com/ekisa-team/syn4pse/node/models"
)

// TestDashboardRoutes: the page at / and /index.html with its assets; unknown API paths, and
// other methods on /, still answer JSON 404.
func TestDashboardRoutes(t *testing.T) {
	base := serve(t)
	for _, c := range []struct {
		method, path, contentType, body string
		status                          int
	}{
		{"GET", "/", "text/html", "<title>SYN4PSE</title>", 200},
		{"GET", "/index.html", "text/html", "<title>SYN4PSE</title>", 200},
		{"GET", "/assets/models.js", "javascript", "/api/models/", 200},
		{"GET", "/v1/x", "application/json", `"not_found"`, 404},
		{"GET", "/api/x", "application/json", `"not_found"`, 404},
		{"POST", "/", "application/json", `"not_found"`, 404},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.Contains(res.Header.Get("Content-Type"), c.contentType) || !strings.Contains(string(b), c.body) {
			t.Errorf("%s %s: %d %q %.200s, want %d %q holding %q", c.method, c.path, res.StatusCode, res.Header.Get("Content-Type"), b, c.status, c.contentType, c.body)
		}
	}
}

// TestEventsStream: GET /api/events sends the peers and the models at once, then the models
// again when one loads.
func TestEventsStream(t *testing.T) {
	base, _ := serveWith(t, &enginetest.Engine{}, models.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /api/events: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	type modelList struct {
		Models []struct{ Name, State string } `json:"models"`
	}
	lines := bufio.NewScanner(res.Body)
	lines.Buffer(nil, 1<<20)
	// next reads the stream up to the next event named name, skipping the others.
	next := func(name string) string {
		t.Helper()
		event := ""
		for lines.Scan() {
			line := lines.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				event = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok && event == name {
				return v
			}
		}
		t.Fatalf("stream ended before a %q event: %v", name, lines.Err())
		return ""
	}
	if peers := next("peers"); !strings.Contains(peers, `"peers"`) {
		t.Fatalf("peers event: %s", peers)
	}
	var first modelList
	if err := json.Unmarshal([]byte(next("models")), &first); err != nil || len(first.Models) != 1 || first.Models[0].Name != "echo" || first.Models[0].State != "MODEL_STATE_AVAILABLE" {
		t.Fatalf("first models event: %+v, %v", first, err)
	}
	if res := post(t, base+"/api/models/echo/load", `{"keep_alive":"5m"}`); res.StatusCode != 200 {
		t.Fatalf("load: %d", res.StatusCode)
	}
	for {
		var got modelList
		if err := json.Unmarshal([]byte(next("models")), &got); err != nil || len(got.Models) != 1 {
			t.Fatalf("models event: %+v, %v", got, err)
		}
		if got.Models[0].State == "MODEL_STATE_LOADED" {
			return
		}
	}
}
