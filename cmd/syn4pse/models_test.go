package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// modelServer serves one model file over HTTP on loopback, slowly when rate > 0 (bytes/s),
// counting the requests that asked for a range.
type modelServer struct {
	*httptest.Server
	ranged atomic.Int32
}

func serveModel(t *testing.T, path string, rate int) *modelServer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &modelServer{}
	sum := sha256.Sum256(data)
	etag := fmt.Sprintf("%q", hex.EncodeToString(sum[:])) // as Hugging Face states a file's digest
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", etag)
		start := 0
		if rg := r.Header.Get("Range"); rg != "" {
			s.ranged.Add(1)
			fmt.Sscanf(rg, "bytes=%d-", &start)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
			w.Header().Set("Content-Length", fmt.Sprint(len(data)-start))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		}
		body := data[start:]
		if rate <= 0 {
			w.Write(body)
			return
		}
		for len(body) > 0 {
			n := min(rate/20, len(body))
			if _, err := w.Write(body[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			body = body[n:]
			time.Sleep(50 * time.Millisecond)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// announcing counts the peers that announce model with its digest (loaded or on disk).
func (n *meshNode) announcing(model string) int {
	res, err := pb.NewNodeServiceClient(n.conn).ListPeers(n.t.Context(), &pb.ListPeersRequest{})
	if err != nil {
		return 0
	}
	count := 0
	for _, p := range res.GetPeers() {
		for _, m := range p.GetCapability().GetModels() {
			if m.GetName() == model && m.GetDigest() != "" {
				count++
			}
		}
	}
	return count
}

func (n *meshNode) servedBy(model string) string {
	n.t.Helper()
	stream, err := pb.NewInferenceServiceClient(n.conn).Complete(n.t.Context(), &pb.CompleteRequest{Model: model, Prompt: "hi",
		Routing: &pb.Routing{LocalOnly: true}, Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(2)), IgnoreEos: true}})
	if err != nil {
		n.t.Fatal(err)
	}
	_, final, err := drain(stream)
	if err != nil {
		n.t.Fatalf("%s serving %s: %v", n.name, model, err)
	}
	return final.GetServedBy()
}

func TestModelsSpreadThroughTheMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	model := writeModel(t, "tiny")
	server := serveModel(t, model, 0)
	a, b, c := newMeshNode(t, "alpha", nil), newMeshNode(t, "beta", nil), newMeshNode(t, "gamma", nil)
	token := formMesh(t, a, b, c)

	// alpha pulls from the web; then the web goes away.
	out, stderr, code := a.run("models", "pull", "x", "--source", server.URL+"/tiny.gguf")
	if code != 0 || !strings.Contains(out, "pulled x") {
		t.Fatalf("pull from HTTP: %d %s %s", code, out, stderr)
	}
	server.Close()
	b.waitFor("alpha to announce x with its digest", func() bool { return b.announcing("x") == 1 })

	// beta gets it from alpha, gamma from either; both serve it themselves.
	for _, n := range []*meshNode{b, c} {
		out, stderr, code := n.run("models", "pull", "x")
		if code != 0 || !strings.Contains(out, "pulled x") || !strings.Contains(stderr, "peer ") {
			t.Fatalf("%s: pull from a peer: %d %s %s", n.name, code, out, stderr)
		}
		if got := n.servedBy("x"); got != n.peerID() {
			t.Fatalf("%s: x served by %s", n.name, got)
		}
	}

	// A tampered blob is rejected, and the model comes from a peer whose blob verifies.
	list, err := pb.NewModelServiceClient(a.conn).ListModels(t.Context(), &pb.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	digest := list.GetModels()[0].GetDigest()
	blob := filepath.Join(a.dir, "data", "models", "blobs", strings.Replace(digest, ":", "-", 1))
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// With only alpha left, its blob is rejected.
	c.kill()
	b.kill()
	d := newMeshNode(t, "delta", nil)
	d.join(token)
	d.start()
	d.waitFor("alpha announcing x", func() bool { return d.announcing("x") == 1 })
	out, stderr, code = d.run("models", "pull", "x")
	if code == 0 || !strings.Contains(stderr, "digest") {
		t.Fatalf("pull of a tampered blob: %d %s %s", code, out, stderr)
	}
	// With beta back, the model comes from beta (alpha may be tried first and rejected again).
	b.start()
	d.waitFor("two peers announcing x", func() bool { return d.announcing("x") == 2 })
	out, stderr, code = d.run("models", "pull", "x")
	if code != 0 || !strings.Contains(out, "pulled x") {
		t.Fatalf("pull with beta back: %d %s %s", code, out, stderr)
	}
	if got := d.servedBy("x"); got != d.peerID() {
		t.Fatalf("delta: x served by %s", got)
	}
}

func TestPullSurvivesAKilledNode(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a node process mid-pull")
	}
	model := writeModel(t, "tiny")
	fi, _ := os.Stat(model)
	server := serveModel(t, model, int(fi.Size()/4)) // about 4 s for the whole file
	n := newMeshNode(t, "alpha", nil)
	conf, _ := os.ReadFile(filepath.Join(n.dir, "syn4pse.toml"))
	conf = append(conf, fmt.Sprintf("[models.x]\nsource = %q\nthreads = 1\n", server.URL+"/x.gguf")...)
	if err := os.WriteFile(filepath.Join(n.dir, "syn4pse.toml"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	partial := filepath.Join(n.dir, "data", "models", "partial")
	n.waitFor("part of the file to arrive", func() bool {
		entries, _ := os.ReadDir(partial)
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.Size() > fi.Size()/8 && !strings.HasSuffix(e.Name(), ".json") {
				return true
			}
		}
		return false
	})
	n.kill()

	// Restarted: x is listed as being pulled, never as a (corrupt) model, and the pull resumes.
	n.start()
	list, err := pb.NewModelServiceClient(n.conn).ListModels(t.Context(), &pb.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m := list.GetModels()[0]; m.GetState() == pb.ModelState_MODEL_STATE_LOADED || m.GetState() == pb.ModelState_MODEL_STATE_AVAILABLE && m.GetDigest() == "" && m.GetSizeBytes() < fi.Size() {
		t.Fatalf("after the crash: %v", m)
	}
	n.waitFor("the pull to finish", func() bool {
		list, err := pb.NewModelServiceClient(n.conn).ListModels(t.Context(), &pb.ListModelsRequest{})
		return err == nil && list.GetModels()[0].GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE
	})
	if server.ranged.Load() == 0 {
		t.Fatal("the restarted pull did not resume with a Range request")
	}
	if got := n.servedBy("x"); got != n.peerID() {
		t.Fatalf("x served by %s", got)
	}
}
