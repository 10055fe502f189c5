package node_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ekisa-team/syn4pse/node/config"
)

// TestDashboardModels drives the Models page against a real node: a pull by URL from a local
// HTTP server shows its progress bar midway and at 100% and the model joins the list; a bad
// source shows the API's error; the pulled model is deleted through the confirmation and leaves
// the list; the ps view shows the loaded model with its memory and when it unloads, and drops
// it once unloaded.
func TestDashboardModels(t *testing.T) {
	blob, err := os.ReadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	// The source sends half the file, then holds the rest until the page has shown a progress
	// between 0 and 100%: the bar is seen moving without any timing guess.
	release := make(chan struct{})
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(open)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		if r.Method == http.MethodHead {
			return
		}
		half := len(blob) / 2
		w.Write(blob[:half])
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(blob[half:])
	}))
	t.Cleanup(src.Close)

	n := startNode(t, tinyDecl("tiny"))
	p := openDashboard(t, "http://"+n.HTTPAddr())
	// The refused pull and delete below show in the console as failed loads (400, 412); nothing
	// else may.
	p.allow = func(m chromedp.ConsoleMessage) bool {
		return m.Source == "network" && (strings.Contains(m.Text, "status of 400") || strings.Contains(m.Text, "status of 412"))
	}
	p.do("open the Models page", chromedp.Navigate(p.base+"/#/models"))
	p.waitFor("tiny in the list", `document.querySelector('tr[data-row="tiny"]') !== null`)
	if eval[bool](p, `document.getElementById('pull-progress').checkVisibility()`) {
		t.Error("the progress bar shows before any pull")
	}

	// A source the node cannot pull from: the API's message is on the page.
	p.do("a bad source", chromedp.SendKeys(chromedp.ID("pull-name"), "bad"),
		chromedp.SendKeys(chromedp.ID("pull-source"), "ftp://127.0.0.1/bad.gguf"), chromedp.Click(chromedp.ID("pull-submit")))
	p.waitFor("the refusal", `document.getElementById('pull-progress').classList.contains('failed') && document.getElementById('pull-text').textContent.includes('hf://')`)
	p.shot("pull-refused")
	p.do("clear", chromedp.Evaluate[chromedp.Void](`document.getElementById('pull-form').reset()`))

	// The pull, by URL: midway, then done, then in the list.
	p.do("pull by URL", chromedp.SendKeys(chromedp.ID("pull-name"), "pulled"),
		chromedp.SendKeys(chromedp.ID("pull-source"), src.URL+"/pulled.gguf"), chromedp.Click(chromedp.ID("pull-submit")))
	bar := `document.getElementById('pull-progress')`
	p.waitFor("the bar midway", `(() => { const v = Number(`+bar+`.dataset.percent); return `+bar+`.dataset.percent !== '' && v > 0 && v < 100 && document.getElementById('pull-bar').value === v; })()`)
	mid := eval[string](p, `document.getElementById('pull-text').textContent`)
	t.Logf("midway: %s", mid)
	if !strings.Contains(mid, "downloading") || !strings.Contains(mid, "%") || !strings.Contains(mid, " / ") {
		t.Errorf("progress text midway %q: want the status, a percent and completed / total", mid)
	}
	p.shot("pull-midway")
	open()
	p.waitFor("the bar at 100%", bar+`.classList.contains('done') && `+bar+`.dataset.percent === '100' && document.getElementById('pull-bar').value === 100`)
	pulled := `document.querySelector('tr[data-row="pulled"]')`
	p.waitFor("the pulled model in the list", pulled+` !== null`)
	p.shot("pulled")

	// Delete it, cancelling first: it stays; confirming: it goes.
	p.do("delete pulled", chromedp.Click(chromedp.CSS(`tr[data-row="pulled"] button[data-action="delete"]`)))
	p.waitFor("the confirmation", `document.getElementById('confirm').open && document.getElementById('confirm-text').textContent.includes('pulled')`)
	p.shot("delete-confirm")
	p.do("cancel", chromedp.Click(chromedp.ID("confirm-cancel")))
	p.waitFor("the dialog closed", `!document.getElementById('confirm').open`)
	if eval[bool](p, pulled+` === null`) {
		t.Fatal("cancelling the delete removed the model")
	}
	p.do("delete pulled", chromedp.Click(chromedp.CSS(`tr[data-row="pulled"] button[data-action="delete"]`)))
	p.waitFor("the confirmation", `document.getElementById('confirm').open`)
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	p.waitFor("pulled gone from the list", pulled+` === null && document.getElementById('models-status').textContent.includes('deleted')`)
	httpStatus(t, &http.Client{}, "POST", "http://"+n.HTTPAddr()+"/api/models/pulled/load", "", http.StatusNotFound)

	// ps: tiny loaded shows with its memory and when keep_alive unloads it.
	row := `document.querySelector('#models tr[data-row="tiny"]')`
	if eval[string](p, row+`.querySelector('button.act').dataset.action`) == "load" {
		p.do("load tiny", chromedp.Click(chromedp.CSS(`#models tr[data-row="tiny"] button[data-action="load"]`)))
		p.waitFor("the confirmation", `document.getElementById('confirm').open`)
		p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	}
	ps := `document.querySelector('#running tr[data-row="tiny"]')`
	p.waitFor("tiny in the ps view with its memory", ps+`?.querySelector('.mem')?.textContent.includes('iB')`)
	unloads := eval[string](p, ps+`.querySelector('.until').textContent`)
	t.Logf("ps: %s", eval[string](p, ps+`.textContent`))
	if !strings.HasPrefix(unloads, "in ") || !strings.Contains(unloads, "m ") {
		t.Errorf("tiny unloads %q: want in about 5m (keep_alive 5m)", unloads)
	}
	p.shot("ps")
	// Unloaded, it leaves the ps view.
	p.do("unload tiny", chromedp.Click(chromedp.CSS(`#models tr[data-row="tiny"] button[data-action="unload"]`)))
	p.waitFor("the confirmation", `document.getElementById('confirm').open`)
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	p.waitFor("the ps view empty", ps+` === null && document.getElementById('running').textContent.includes('No model is loaded')`)
	p.shot("ps-empty")

	// A model the config declares by path is not the page's to delete: the node says so.
	p.do("delete tiny", chromedp.Click(chromedp.CSS(`#models tr[data-row="tiny"] button[data-action="delete"]`)))
	p.waitFor("the confirmation", `document.getElementById('confirm').open`)
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	p.waitFor("the refusal", `document.querySelector('#models-status.error')?.textContent.includes('remove it there')`)
	p.waitFor("tiny still listed", `document.querySelector('#models tr[data-row="tiny"] button[data-action="delete"]:not([disabled])') !== null`)
	p.shot("delete-refused")
	p.noErrors()
}

// TestDashboardModelsKeyed: with server.api_keys set, the pull's stream carries the key the tab
// holds; a pulled model, loaded, is deleted through the confirmation that says it is unloaded
// first (DELETE /api/models/{name}?force=true).
func TestDashboardModelsKeyed(t *testing.T) {
	blob, err := os.ReadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(blob) }))
	t.Cleanup(src.Close)
	n := startConfigured(t, keyedConfig(t, tinyDecl("tiny")))
	p := openDashboard(t, "http://"+n.HTTPAddr())
	// The API's 401s before the key is given show in the console as failed loads.
	p.allow = func(m chromedp.ConsoleMessage) bool {
		return m.Source == "network" && strings.Contains(m.Text, "status of 401")
	}
	p.do("open the Models page", chromedp.Navigate(p.base+"/#/models"))
	p.waitFor("the key prompt", `document.getElementById('key-form') !== null`)
	p.do("the key", chromedp.SendKeys(chromedp.ID("api-key"), testKey), chromedp.Click(chromedp.CSS(`#key-form button`)))
	p.waitFor("tiny in the list", `document.querySelector('tr[data-row="tiny"]') !== null`)

	p.do("pull by URL", chromedp.SendKeys(chromedp.ID("pull-name"), "keyed"),
		chromedp.SendKeys(chromedp.ID("pull-source"), src.URL+"/keyed.gguf"), chromedp.Click(chromedp.ID("pull-submit")))
	p.waitFor("the bar at 100%", `document.getElementById('pull-progress').dataset.percent === '100' && document.getElementById('pull-progress').classList.contains('done')`)
	row := `document.querySelector('#models tr[data-row="keyed"]')`
	p.waitFor("keyed in the list", row+` !== null`)

	p.do("load keyed", chromedp.Click(chromedp.CSS(`#models tr[data-row="keyed"] button[data-action="load"]`)))
	p.waitFor("the confirmation", `document.getElementById('confirm').open`)
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	p.waitFor("keyed loaded and running", row+`?.querySelector('.badge.loaded') !== null && document.querySelector('#running tr[data-row="keyed"]') !== null`)
	p.do("delete keyed", chromedp.Click(chromedp.CSS(`#models tr[data-row="keyed"] button[data-action="delete"]`)))
	p.waitFor("the confirmation, saying it is loaded", `document.getElementById('confirm').open && document.getElementById('confirm-text').textContent.includes('unloaded first')`)
	p.shot("delete-loaded-confirm")
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	p.waitFor("keyed gone from the list and the ps view", row+` === null && document.querySelector('#running tr[data-row="keyed"]') === null`)
	httpStatus(t, &http.Client{}, "POST", "http://"+n.HTTPAddr()+"/api/models/keyed/load", "Bearer "+testKey, http.StatusNotFound)
	p.noErrors()
}

// TestDashboardModelsFromTheMesh: the Models page of node a lists the models only its peer b
// has, with the node that holds each; "Pull here" copies b's embeddings model over the mesh,
// with the progress bar reaching 100% from the peer, and a registers it as b serves it (an
// embeddings model, not an LLM), at which point it leaves the mesh list for a's own.
func TestDashboardModelsFromTheMesh(t *testing.T) {
	a, _, _, _ := startMeshPair(t, []config.Model{tinyDecl("tiny")}, tinyDecl("btiny"), embedDecl(t, "bembed"))
	p := openDashboard(t, "http://"+a.HTTPAddr())
	p.do("open the Models page", chromedp.Navigate(p.base+"/#/models"))
	mesh := func(name string) string { return `document.querySelector('#mesh-models tr[data-row="` + name + `"]')` }
	p.waitFor("b's models in the mesh list, pullable", mesh("bembed")+`?.querySelector('button[data-action="pull"]:not([disabled])') !== null && `+
		mesh("btiny")+` !== null && `+mesh("tiny")+` === null`)
	if on := eval[string](p, mesh("bembed")+`.querySelector('.nodes').textContent`); !strings.Contains(on, "b") {
		t.Errorf("bembed is on %q, want node b", on)
	}
	p.shot("mesh-models")

	p.do("pull bembed here", chromedp.Click(chromedp.CSS(`#mesh-models tr[data-row="bembed"] button[data-action="pull"]`)))
	p.waitFor("the confirmation", `document.getElementById('confirm').open && document.getElementById('confirm-text').textContent.includes('bembed')`)
	p.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	bar := `document.getElementById('pull-progress')`
	p.waitFor("the bar at 100%, from the peer", bar+`.classList.contains('done') && `+bar+`.dataset.percent === '100' && (`+bar+`.dataset.from || '').startsWith('peer ')`)
	own := `document.querySelector('#models tr[data-row="bembed"]')`
	p.waitFor("bembed among a's own models, out of the mesh list", own+` !== null && `+mesh("bembed")+` === null && `+mesh("btiny")+` !== null`)
	if k := eval[string](p, own+`.children[1].textContent`); k != "embeddings" {
		t.Errorf("bembed pulled as %q, want embeddings (as b serves it)", k)
	}
	p.shot("mesh-pulled")

	// a serves it now, as an embeddings model (asked to serve it itself: the router would send
	// the request to b, which has it loaded already).
	req, err := http.NewRequest("POST", "http://"+a.HTTPAddr()+"/v1/embeddings", strings.NewReader(`{"model":"bembed","input":"hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Syn4pse-Local-Only", "true")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Syn4pse-Served-By") != nodeID(t, a.HTTPAddr()) {
		t.Errorf("embeddings from bembed on a: %s, served by %q", res.Status, res.Header.Get("Syn4pse-Served-By"))
	}
	p.noErrors()
}
