package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/node/httpapi/dashboard"
)

// TestBundleSize: the whole embedded bundle stays far under 1 MB (issue 14).
func TestBundleSize(t *testing.T) {
	size, err := dashboard.Size()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard bundle: %d bytes", size)
	if size <= 0 || size >= 1<<20 {
		t.Fatalf("bundle is %d bytes, want 0 < size < 1 MiB", size)
	}
}

// TestHandler: the page at / and /index.html, its modules as JavaScript, a missing asset 404.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(dashboard.Handler())
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		path, contentType, body string
		status                  int
	}{
		{"/", "text/html", `<script type="module" src="/assets/app.js">`, 200},
		{"/index.html", "text/html", `<main id="main">`, 200},
		{"/assets/app.js", "javascript", "import", 200},
		{"/assets/style.css", "text/css", "@media", 200},
		{"/assets/nope.js", "", "", 404},
	} {
		res, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.Contains(res.Header.Get("Content-Type"), c.contentType) || !strings.Contains(string(b), c.body) {
			t.Errorf("GET %s: %d %q, want %d %q holding %q", c.path, res.StatusCode, res.Header.Get("Content-Type"), c.status, c.contentType, c.body)
		}
	}
}

// TestOpenShell: the page's own GETs skip the guard; everything else, the API included, meets it.
func TestOpenShell(t *testing.T) {
	guard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	open := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h := dashboard.OpenShell(guard, open)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", 200}, {"HEAD", "/", 200}, {"GET", "/index.html", 200}, {"GET", "/assets/app.js", 200},
		{"POST", "/", 401}, {"GET", "/api/status", 401}, {"GET", "/v1/models", 401}, {"GET", "/api/events", 401},
		{"GET", "/metrics", 401}, {"GET", "/assetsx", 401}, {"PUT", "/assets/app.js", 401},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, rec.Code, c.status)
		}
	}
}
