package node_test

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/access"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/logtail"
	"github.com/ekisa-team/syn4pse/node/requestid"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// tailLogs logs through logtail.Recent for the rest of the test, as cmd/syn4pse's setupLogging
// does, at level info.
func tailLogs(t *testing.T) {
	before := slog.Default()
	slog.SetDefault(slog.New(requestid.LogHandler(logtail.Recent.Wrap(
		slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))))
	t.Cleanup(func() { slog.SetDefault(before) })
}

// freeHTTPPort is a loopback port free a moment ago, so the test knows server.http_port.
func freeHTTPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// get fetches url with the API key, failing the test unless it answers 200; it returns the body.
func get(t *testing.T, url, key string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
	}
	return string(b)
}

// noKeys fails the test if text holds one of the test's API keys.
func noKeys(t *testing.T, what, text string) {
	t.Helper()
	for _, k := range []string{testKey, otherKey, wrongKey} {
		if strings.Contains(text, k) {
			t.Fatalf("%s shows API key %q", what, k)
		}
	}
}

// TestConfigAndLogsHideKeys: GET /api/config and /api/logs want the key; the configuration shows
// the port, the model and how many keys there are, never a key, and gRPC's GetConfig gives the
// same; the log tail, plain and followed,
// has the requests made with a key and with a wrong one, and no key.
func TestConfigAndLogsHideKeys(t *testing.T) {
	tailLogs(t)
	cfg := keyedConfig(t, tinyDecl("tiny"))
	port := freeHTTPPort(t)
	cfg.Server.HTTPPort = port
	n := startConfigured(t, cfg)
	base := "http://" + n.HTTPAddr()
	for _, path := range []string{"/api/config", "/api/logs", "/api/logs?follow=1"} {
		httpStatus(t, &http.Client{}, "GET", base+path, "", http.StatusUnauthorized)
	}

	body := get(t, base+"/api/config", testKey)
	noKeys(t, "GET /api/config", body)
	var c struct {
		Server struct {
			HTTPPort int      `json:"http_port"`
			APIKeys  []string `json:"api_keys"`
		}
		DeclaredModels []struct{ Name string } `json:"declared_models"`
	}
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	if c.Server.HTTPPort != port || len(c.Server.APIKeys) != 2 || c.Server.APIKeys[0] != config.Hidden ||
		len(c.DeclaredModels) != 1 || c.DeclaredModels[0].Name != "tiny" {
		t.Fatalf("GET /api/config: %+v", c)
	}

	// gRPC clients get the same, with a key only.
	conn, err := newConn(n.GRPCAddr(), grpc.WithPerRPCCredentials(access.Bearer(testKey, false)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if res, err := pb.NewNodeServiceClient(conn).GetConfig(t.Context(), &pb.GetConfigRequest{}); err != nil || res.GetConfigJson() != body {
		t.Fatalf("gRPC GetConfig: %v, %d bytes, not GET /api/config's %d", err, len(res.GetConfigJson()), len(body))
	}
	bare, err := newConn(n.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if _, err := pb.NewNodeServiceClient(bare).GetConfig(t.Context(), &pb.GetConfigRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC GetConfig without a key: %v, want Unauthenticated", err)
	}

	// Follow the log, then make requests with the key, with the other key and with a wrong one.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/api/logs?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+otherKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /api/logs?follow=1: %v %v", err, res)
	}
	defer res.Body.Close()
	marker := "/v1/models/log-tail-marker-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	httpStatus(t, &http.Client{}, "GET", base+marker, "Bearer "+testKey, http.StatusNotFound)
	httpStatus(t, &http.Client{}, "GET", base+marker+"-refused", "Bearer "+wrongKey, http.StatusUnauthorized)
	events := bufio.NewScanner(res.Body)
	var followed []string
	for events.Scan() {
		line := events.Text()
		noKeys(t, "GET /api/logs?follow=1", line)
		if data, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(data, marker) {
			followed = append(followed, data)
			if strings.Contains(data, marker+"-refused") && strings.Contains(data, "status=401") {
				break
			}
		}
	}
	// The refused request has its warning and its request line.
	if len(followed) != 3 || !strings.Contains(followed[0], "status=404") || !strings.Contains(followed[1], "request refused") {
		t.Fatalf("followed log lines of the two requests: %q", followed)
	}

	body = get(t, base+"/api/logs", testKey)
	noKeys(t, "GET /api/logs", body)
	var logs struct{ Lines []logtail.Line }
	if err := json.Unmarshal([]byte(body), &logs); err != nil {
		t.Fatal(err)
	}
	found := 0
	for i, l := range logs.Lines {
		if i > 0 && l.Seq <= logs.Lines[i-1].Seq {
			t.Errorf("lines out of order: %d after %d", l.Seq, logs.Lines[i-1].Seq)
		}
		if l.Msg == "http request" && strings.Contains(l.Attrs, marker) {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("GET /api/logs: %d lines of the marked requests, want 2:\n%s", found, body)
	}
}

// TestDashboardNodeConfigAndLogs: the Node page shows the configuration in effect (the HTTP
// port, the declared model, the keys hidden) in collapsible sections, and its log tail shows,
// live, a request made while the page is open; the level filter hides info lines.
func TestDashboardNodeConfigAndLogs(t *testing.T) {
	tailLogs(t)
	cfg := keyedConfig(t, tinyDecl("tiny"))
	port := freeHTTPPort(t)
	cfg.Server.HTTPPort = port
	n := startConfigured(t, cfg)
	p := openDashboard(t, "http://"+n.HTTPAddr())
	p.allow = func(m chromedp.ConsoleMessage) bool { // the 401s before the key is given
		return m.Source == "network" && strings.Contains(m.Text, "401")
	}
	p.do("open the Node page", chromedp.Navigate(p.base+"/#/node"))
	p.waitFor("the key prompt", `document.getElementById('key-form') !== null`)
	p.do("the key", chromedp.SendKeys(chromedp.ID("api-key"), testKey), chromedp.Click(chromedp.CSS(`#key-form button`)))
	// llama.cpp's system info, read into each backend's features.
	p.waitFor("llama.cpp's backends and features", `document.querySelector('#node-engines dd')?.textContent.startsWith('CPU') && document.querySelectorAll('#node-engines dd .badge').length > 0`)

	cfgCard := `document.querySelector('#node-config')`
	server := `document.querySelector('#node-config details[data-section="server"]')`
	p.waitFor("the server section, open, with the HTTP port", server+`?.open && [...`+server+`.querySelectorAll('dt')].some(dt => dt.textContent === 'http_port' && dt.nextSibling.textContent === '`+strconv.Itoa(port)+`')`)
	p.waitFor("the keys hidden", `[...`+server+`.querySelectorAll('dt')].some(dt => dt.textContent === 'api_keys' && dt.nextSibling.textContent === '[hidden], [hidden]')`)
	p.waitFor("the declared model", cfgCard+`.querySelector('details[data-model="tiny"]') !== null`)
	router := `document.querySelector('#node-config details[data-section="router"]')`
	p.waitFor("the router section, closed", router+` !== null && !`+router+`.open`)
	p.do("open the router section", chromedp.Click(chromedp.CSS(`#node-config details[data-section="router"] summary`)))
	p.waitFor("the router section, open", router+`.open && `+router+`.textContent.includes('max_hops')`)
	if text := eval[string](p, `document.body.innerText + document.body.innerHTML`); strings.Contains(text, testKey) || strings.Contains(text, otherKey) {
		t.Fatal("the Node page shows an API key")
	}

	p.waitFor("the log tail, live", `document.querySelector('#node-logs')?.textContent.includes('live')`)
	marker := "/v1/models/dashboard-log-marker-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	httpStatus(t, &http.Client{}, "GET", "http://"+n.HTTPAddr()+marker, "Bearer "+testKey, http.StatusNotFound)
	line := `[...document.querySelectorAll('#log-lines .log')].find(l => l.textContent.includes(` + js(marker) + `))`
	p.waitFor("the request's line in the tail", line+`?.hidden === false`)
	p.waitFor("the tail scrolled to the bottom", `(b => b.scrollHeight - b.scrollTop - b.clientHeight < 24)(document.getElementById('log-lines'))`)
	p.do("scroll to the config", chromedp.ScrollIntoView(chromedp.CSS(`#node-config`)))
	p.shot("config")
	p.do("show the log", chromedp.ScrollIntoView(chromedp.CSS(`#node-logs`)))
	p.shot("logs")
	p.do("warnings and up", chromedp.SetValue(chromedp.ID("log-level"), "WARN"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('log-level').dispatchEvent(new Event('change'))`))
	p.waitFor("the info line hidden", line+`.hidden === true`)
	if text := eval[string](p, `document.getElementById('log-lines').textContent`); strings.Contains(text, testKey) {
		t.Fatal("the log tail shows an API key")
	}
	p.noErrors()
}
