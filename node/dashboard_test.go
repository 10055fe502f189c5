package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// These tests drive the dashboard (package node/httpapi/dashboard) in headless Chromium against
// real nodes: Debian's chromium, driven over the DevTools protocol by chromedp. Screenshots go
// to the test's temp dir, or to $SYN4PSE_TEST_SCREENSHOTS when set, to keep them.

// page is one browser tab on the dashboard, with the console errors it has seen.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string
	mu   sync.Mutex
	errs []string
	// allow is a console error the test expects, such as the 401 before the key is given.
	allow func(chromedp.ConsoleMessage) bool
	shots string
}

// openDashboard starts headless Chromium on base (http://host:port), with any extra flags, or
// skips the test when chromium is not installed.
func openDashboard(t *testing.T, base string, extra ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium, as scripts/install-deps.sh does): the dashboard's browser tests need it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		// Only loopback: every other host name fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"))
	opts = append(opts, extra...)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	p := &page{t: t, ctx: ctx, base: base, shots: os.Getenv("SYN4PSE_TEST_SCREENSHOTS")}
	if p.shots == "" {
		p.shots = t.TempDir()
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && !m.IsException() {
				continue
			}
			p.mu.Lock()
			if p.allow == nil || !p.allow(m) {
				p.errs = append(p.errs, fmt.Sprintf("%s %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// do runs browser actions, failing the test on an error.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.shot("failed")
		p.t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls a JavaScript condition until it holds, for at most a minute.
func (p *page) waitFor(what, cond string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(time.Minute))); err != nil {
		p.shot("failed")
		p.t.Fatalf("waiting for %s (%s): %v", what, cond, err)
	}
}

// eval returns a JavaScript expression's value.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a screenshot of the tab as name.png and logs where.
func (p *page) shot(name string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(p.shots, p.t.Name()+"-"+name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", file)
}

// noErrors fails the test if the page wrote an error to the console or threw.
func (p *page) noErrors() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		p.t.Fatalf("the page logged %d JavaScript errors:\n%s", len(p.errs), strings.Join(p.errs, "\n"))
	}
}

// js quotes s as a JavaScript string.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// nodeID is a node's ID as GET /api/status gives it.
func nodeID(t *testing.T, httpAddr string) string {
	t.Helper()
	res, err := http.Get("http://" + httpAddr + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st struct {
		NodeID string `json:"node_id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil || st.NodeID == "" {
		t.Fatalf("GET /api/status: %v %+v", err, st)
	}
	return st.NodeID
}

// TestDashboard loads each page of node a's dashboard in a mesh of two: the Node page shows a,
// the Mesh page shows peer b with its model and its link to a on the map, and a third node as
// it joins (with its links to a and b) and leaves, live; the Models page unloads and loads a's model; the Playground streams answers from a's and b's models and names the serving node
// through confirmation dialogs; the page is laid out for a phone too; and nothing in the
// console is an error.
func TestDashboard(t *testing.T) {
	a, b, key, aAddrs := startMeshPair(t, []config.Model{tinyDecl("tiny")}, tinyDecl("btiny"))
	aID, bID := nodeID(t, a.HTTPAddr()), nodeID(t, b.HTTPAddr())
	p := openDashboard(t, "http://"+a.HTTPAddr())

	p.do("open the Node page", chromedp.Navigate(p.base+"/#/node"))
	p.waitFor("a's node ID on the Node page", `document.querySelector('#node-status')?.textContent.includes(`+js(aID)+`)`)
	p.waitFor("a's mesh name (p2p.name) as the title", `document.querySelector('#node-status h2')?.textContent === 'a'`)
	p.waitFor("the hardware card", `document.querySelector('#node-hardware')?.textContent.includes('CPU cores')`)
	p.shot("node")

	p.do("open the Mesh page", chromedp.Click(chromedp.CSS(`nav a[data-page="mesh"]`)))
	peer := `document.querySelector('[data-peer=` + js(bID) + `]')`
	p.waitFor("peer b with its model on the Mesh page", peer+`?.textContent.includes('btiny')`)
	p.waitFor("peer b connected", peer+`?.querySelector('.badge.connected') !== null`)
	p.waitFor("a's own model on its card", `document.querySelector('.card.self')?.textContent.includes('tiny')`)
	// The map: a in the centre, b connected, and the a-b link with its round trip.
	onMap := func(id string) string { return `document.querySelector('#mesh-map [data-node=` + js(id) + `]')` }
	p.waitFor("a and b on the map", onMap(aID)+`?.dataset.state === 'self' && `+onMap(bID)+`?.dataset.state === 'connected'`)
	p.waitFor("the a-b link", mapLink(aID, bID)+` !== null`)
	p.waitFor("b's name, accelerator and load on the map", onMap(bID)+`.querySelector('text').textContent.startsWith('bCPU') && `+onMap(bID)+`.querySelector('text').textContent.includes(' free')`)
	p.shot("mesh")
	p.do("click b on the map", chromedp.Click(chromedp.CSS(`#mesh-map [data-node=`+js(bID)+`]`)))
	p.waitFor("b's card picked", peer+`.classList.contains('picked')`)

	// A third node joins, bootstrapped from a and b: the map shows it without a reload, with its
	// link to a (a's own connection) and to b (which a knows only from b's and c's announced
	// links). It leaves, and the map drops it and its links.
	bStatus, err := pb.NewNodeServiceClient(grpcConn(t, b)).MeshStatus(t.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := node.Start(t.Context(), meshConfig(t, key, "c", append(aAddrs, bStatus.GetListenAddrs()...)))
	if err != nil {
		t.Fatal(err)
	}
	var stopC sync.Once
	shutdownC := func() { stopC.Do(func() { c.Shutdown(context.WithoutCancel(t.Context())) }) }
	t.Cleanup(shutdownC)
	cID := nodeID(t, c.HTTPAddr())
	cCard := `document.querySelector('[data-peer=` + js(cID) + `]')`
	p.waitFor("peer c on the map", cCard+`?.querySelector('.badge.connected') !== null`)
	// Three nodes, three links: each reported by both its ends (and a's own view), drawn once.
	p.waitFor("c on the map, linked to a and b", onMap(cID)+`?.dataset.state === 'connected' && `+mapLink(aID, cID)+` !== null && `+mapLink(bID, cID)+` !== null`+
		` && document.querySelectorAll('#mesh-map [data-link]').length === 3 && document.querySelectorAll('#mesh-map [data-node]').length === 3`)
	t.Logf("map with c: %s", eval[string](p, `[...document.querySelectorAll('#mesh-map [data-link]')].map(l => l.dataset.link.split(' ').map(id => id.slice(-6)).join('-') + ' ' + l.dataset.rtt + ' ms').join(', ')`))
	p.shot("mesh-joined")
	shutdownC()
	p.waitFor("peer c gone or down", `(`+cCard+` ?? null) === null || `+cCard+`.querySelector('.badge.down') !== null`)
	p.waitFor("c gone from the map or down, its links gone",
		`(`+onMap(cID)+` === null || `+onMap(cID)+`.dataset.state === 'down') && `+mapLink(aID, cID)+` === null && `+mapLink(bID, cID)+` === null`)
	p.waitFor("the a-b link still there, alone", mapLink(aID, bID)+` !== null && document.querySelectorAll('#mesh-map [data-link]').length === 1`)
	p.shot("mesh-left")

	p.do("open the Models page", chromedp.Click(chromedp.CSS(`nav a[data-page="models"]`)))
	row := `document.querySelector('tr[data-row="tiny"]')`
	// A mesh node loads its models at start: unload tiny, then load it again.
	p.waitFor("tiny loaded at start", row+`?.querySelector('.badge.loaded') !== null`)
	p.do("unload tiny", chromedp.Click(chromedp.CSS(`tr[data-row="tiny"] button.act[data-action="unload"]`)))
	p.waitFor("the confirmation", `document.getElementById('confirm').open`)
	p.shot("models-confirm")
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	p.waitFor("tiny unloaded", row+`?.querySelector('.badge.available') !== null && `+row+`.querySelector('button.act').dataset.action === 'load'`)
	p.shot("models-unloaded")
	p.do("load tiny", chromedp.Click(chromedp.CSS(`tr[data-row="tiny"] button.act[data-action="load"]`)))
	p.waitFor("the confirmation", `document.getElementById('confirm').open`)
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	p.waitFor("tiny loaded", row+`?.querySelector('.badge.loaded') !== null && `+row+`.querySelector('button.act').dataset.action === 'unload'`)
	p.shot("models-loaded")

	// The playground streams an answer from a's own model, then from b's, and says who served.
	p.do("open the Playground", chromedp.Click(chromedp.CSS(`nav a[data-page="chat"]`)))
	p.waitFor("both models in the picker", `[...document.querySelectorAll('#chat-model option')].map(o => o.value).join() === 'tiny,btiny'`)
	p.do("few tokens", chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-max-tokens').value = '8'`))
	for i, c := range []struct{ model, servedBy string }{{"tiny", "(this node)"}, {"btiny", "served by b"}} {
		p.do("pick "+c.model, chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-model').value = `+js(c.model)))
		p.do("send", chromedp.SendKeys(chromedp.ID("chat-input"), "Hello"), chromedp.Click(chromedp.ID("chat-send")))
		answer := fmt.Sprintf(`document.querySelectorAll('.msg.assistant')[%d]`, i)
		p.waitFor("the answer of "+c.model, answer+`?.classList.contains('done')`)
		meta := eval[string](p, answer+`.querySelector('.meta').textContent`)
		chunks := eval[string](p, answer+`.dataset.chunks`)
		t.Logf("%s: %q, %s chunks, %s", c.model, eval[string](p, answer+`.querySelector('.text').textContent`), chunks, meta)
		if !strings.Contains(meta, c.servedBy) || !strings.Contains(meta, "tokens") || chunks == "0" {
			t.Errorf("answer of %s: meta %q, %s streamed chunks; want %q, a token count and chunks", c.model, meta, chunks, c.servedBy)
		}
	}
	p.shot("playground")

	// Both models have generated now: the Mesh page shows their speeds, a's from its own
	// stats (GET /api/models), b's from its announcement.
	p.do("open the Mesh page", chromedp.Click(chromedp.CSS(`nav a[data-page="mesh"]`)))
	speed := func(card, model string) string {
		return `/^[0-9]+\.[0-9]$/.test(document.querySelector('` + card + ` tr[data-row="` + model + `"] td:last-child')?.textContent)`
	}
	p.waitFor("tokens/s of a's tiny and b's btiny", speed(".card.self", "tiny")+` && `+speed(`[data-peer="`+bID+`"]`, "btiny"))

	// The Node page's traffic, from a's /metrics: the chats it took, the one it forwarded to b,
	// and the tokens its own model generated.
	p.do("open the Node page", chromedp.Click(chromedp.CSS(`nav a[data-page="node"]`)))
	cell := func(row string, col int) string {
		return fmt.Sprintf(`Number(document.querySelector('#node-traffic tr[data-row=%s] td:nth-child(%d)')?.textContent.replaceAll(',', ''))`, js(row), col)
	}
	p.waitFor("the chats, the forward to b and tiny's tokens", cell("http:POST /v1/chat/completions", 2)+` >= 2 && `+cell("fwd:ok", 2)+` >= 1 && `+cell("tokens:tiny", 3)+` > 0`)
	p.shot("node-traffic")

	// A phone: nothing wider than the screen, the tables scroll in their own box.
	p.do("phone width", chromedp.EmulateViewport(390, 844))
	for _, name := range []string{"node", "mesh", "models", "chat"} {
		p.do("open "+name, chromedp.Navigate(p.base+"/#/"+name))
		p.waitFor(name+" drawn", `document.querySelector('main h1') !== null && document.querySelector('main .card, main table, main form') !== null`)
		if w := eval[float64](p, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
			p.shot("phone-" + name)
			t.Errorf("%s page at phone width: %v px wider than the screen", name, w)
		}
		p.shot("phone-" + name)
	}
	p.noErrors()
}

// mapLink is the Mesh page map's link between two nodes, keyed by their IDs sorted.
func mapLink(x, y string) string {
	if y < x {
		x, y = y, x
	}
	return `document.querySelector('#mesh-map [data-link=` + js(x+" "+y) + `]')`
}

// TestDashboardAPIKey: with server.api_keys set, the page (served without a key) asks for one,
// keeps it for the tab and then shows the node's data; a wrong key gets the prompt again.
func TestDashboardAPIKey(t *testing.T) {
	n := startConfigured(t, keyedConfig(t, tinyDecl("tiny")))
	// The page and its files are open; the API, the event stream included, is not.
	client := &http.Client{}
	for _, path := range []string{"/", "/index.html", "/assets/app.js"} {
		httpStatus(t, client, "GET", "http://"+n.HTTPAddr()+path, "", http.StatusOK)
	}
	for _, path := range []string{"/api/events", "/api/models", "/v1/models", "/assets/../api/status"} {
		httpStatus(t, client, "GET", "http://"+n.HTTPAddr()+path, "", http.StatusUnauthorized)
	}
	httpStatus(t, client, "GET", "http://"+n.HTTPAddr()+"/api/events", "Bearer "+testKey, http.StatusOK)
	p := openDashboard(t, "http://"+n.HTTPAddr())
	// The API's 401s before the key is given show in the console as failed loads.
	p.allow = func(m chromedp.ConsoleMessage) bool {
		return m.Source == "network" && strings.Contains(m.Text, "401")
	}

	p.do("open the Models page", chromedp.Navigate(p.base+"/#/models"))
	p.waitFor("the key prompt, no refusal yet", `document.getElementById('key-form') !== null && document.querySelector('main .error') === null && !document.querySelector('main').textContent.includes('null')`)
	p.shot("prompt")
	p.do("a wrong key", chromedp.SendKeys(chromedp.ID("api-key"), wrongKey), chromedp.Click(chromedp.CSS(`#key-form button`)))
	p.waitFor("the prompt again, with the refusal", `document.getElementById('key-form') !== null && document.querySelector('main .error') !== null`)
	p.do("clear", chromedp.Evaluate[chromedp.Void](`document.getElementById('api-key').value = ''`))
	p.do("the key", chromedp.SendKeys(chromedp.ID("api-key"), testKey), chromedp.Click(chromedp.CSS(`#key-form button`)))
	p.waitFor("the models", `document.querySelector('tr[data-row="tiny"]') !== null`)
	p.waitFor("the live feed", `document.getElementById('live').classList.contains('on')`)
	p.shot("models")
	if key := eval[string](p, `sessionStorage.getItem('syn4pse.apiKey')`); key != testKey {
		t.Fatalf("sessionStorage holds %q, want the key given", key)
	}
	p.do("open the Node page", chromedp.Click(chromedp.CSS(`nav a[data-page="node"]`)))
	p.waitFor("the node's status", `document.querySelector('#node-status dd') !== null`)
	p.noErrors()
}
