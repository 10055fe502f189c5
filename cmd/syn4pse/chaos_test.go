package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/internal/netlab"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// The chaos tests run real node processes, each in a network namespace of its own, joined by
// netlab's userspace switch: every packet between two nodes is delayed, some are lost, and a
// partition drops all of them between its sides. The figures they log (convergence and
// recovery times) are measurements for the record; the bounds they poll under are generous
// liveness deadlines, not performance thresholds.

// labDelay and labLoss are the network the mesh must live with: 100 ms each way, 5% loss.
const (
	labDelay = 100 * time.Millisecond
	labLoss  = 0.05
)

// newChaosLab builds n namespaces for a chaos test, or skips where they cannot be built.
func newChaosLab(t *testing.T, n int) *netlab.Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos: starts node processes in network namespaces")
	}
	if err := netlab.Available(); err != nil {
		t.Skipf("chaos tests need network namespaces and a TUN device: %v (CI runs them as root)", err)
	}
	lab, err := netlab.New("s4p-chaos", n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	return lab
}

// labMesh writes the config of one node per lab namespace (node i named n<i>, serving models[i]
// when given), inits the mesh on the first and has the others join with its invitation. It
// starts none but the first.
func labMesh(t *testing.T, lab *netlab.Lab, models []map[string]string) []*meshNode {
	t.Helper()
	var nodes []*meshNode
	for i, ns := range lab.Nodes() {
		var m map[string]string
		if i < len(models) {
			m = models[i]
		}
		nodes = append(nodes, newMeshNodeAt(t, ns, fmt.Sprintf("n%d", i+1), m))
	}
	joinMesh(t, nodes[0], nodes[1:]...)
	return nodes
}

// poll waits up to limit for cond and returns how long it took.
func poll(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// view is which nodes' model each node's peer table holds.
type view struct {
	nodes  []*meshNode
	ids    []string
	models []string
}

func newView(nodes []*meshNode, models []string) *view {
	v := &view{nodes: nodes, models: models}
	for _, n := range nodes {
		v.ids = append(v.ids, n.peerID())
	}
	return v
}

// sees reports whether node a's table holds node b announcing its model, loaded.
func (v *view) sees(a, b int) bool {
	for _, id := range v.nodes[a].peers(v.models[b]) {
		if id == v.ids[b] {
			return true
		}
	}
	return false
}

// split reports whether every node sees exactly the others of its own side (sides by index).
func (v *view) split(side func(i int) int) bool {
	for a := range v.nodes {
		for b := range v.nodes {
			if a != b && v.sees(a, b) != (side(a) == side(b)) {
				return false
			}
		}
	}
	return true
}

func TestChaosMeshConvergesAndHealsUnderDelayAndLoss(t *testing.T) {
	lab := newChaosLab(t, 5)
	lab.SetDelay(labDelay)
	lab.SetLoss(labLoss)
	model := writeModel(t, "tiny")
	var decls []map[string]string
	var names []string
	for i := range 5 {
		names = append(names, fmt.Sprintf("m%d", i+1))
		decls = append(decls, map[string]string{names[i]: model})
	}
	nodes := labMesh(t, lab, decls)
	for _, n := range nodes[1:] {
		n.start()
	}
	v := newView(nodes, names)

	// a. Every table holds every other node's model.
	all := func(int) int { return 0 }
	took := poll(t, "every table to hold every other node's model", 2*time.Minute, func() bool { return v.split(all) })
	t.Logf("5 nodes, %v delay, %.0f%% loss: converged %v after the last start", labDelay, labLoss*100, took.Round(10*time.Millisecond))

	// A chat for the model only n5 has, sent to n1, is served by n5.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stream, err := pb.NewInferenceServiceClient(nodes[0].conn).Chat(ctx, &pb.ChatRequest{Model: "m5",
		Messages: []*pb.Message{{Role: "user", Content: "Hello"}}, Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(8)), IgnoreEos: true}})
	if err != nil {
		t.Fatal(err)
	}
	text, final, err := drain(stream)
	if err != nil || final.GetServedBy() != v.ids[4] || final.GetUsage().GetCompletionTokens() != 8 {
		t.Fatalf("chat for m5 through n1: %q, final %v, err %v; want served by n5 %s", text, final, err, v.ids[4])
	}

	// b. A partition splits {n1, n2} from {n3, n4, n5}: after the TTL each side's tables lose
	// the other side; healing restores them.
	lab.Partition([]int{1, 2}, []int{3, 4, 5})
	sides := func(i int) int {
		if i < 2 {
			return 1
		}
		return 2
	}
	took = poll(t, "the partition to split the tables", 2*time.Minute, func() bool { return v.split(sides) })
	t.Logf("partition {n1,n2} | {n3,n4,n5}: tables split %v after it (peer_ttl 4s)", took.Round(10*time.Millisecond))
	lab.Heal()
	took = poll(t, "healing to restore every table", 3*time.Minute, func() bool { return v.split(all) })
	t.Logf("healed: every table whole again %v after it", took.Round(10*time.Millisecond))

	// Again, until the connections across the cut have dropped: healing must then redial.
	lab.Partition([]int{1, 2}, []int{3, 4, 5})
	took = poll(t, "the connections across the partition to drop", 3*time.Minute, func() bool {
		return connectedPeers(t, nodes[0]) == 1 && connectedPeers(t, nodes[2]) == 2
	})
	t.Logf("second partition: the connections across it dropped %v after it", took.Round(10*time.Millisecond))
	lab.Heal()
	took = poll(t, "healing to restore every table", 3*time.Minute, func() bool { return v.split(all) })
	t.Logf("healed: every table whole again %v after it, the connections redialled", took.Round(10*time.Millisecond))
}

func TestChaosKilledNodesRestartCleanly(t *testing.T) {
	lab := newChaosLab(t, 3)
	lab.SetDelay(labDelay)
	lab.SetLoss(labLoss)
	model := writeModel(t, "tiny")
	// n1 is where clients come in, n2 serves x, n3 serves m3 and pulls x from n2.
	nodes := labMesh(t, lab, []map[string]string{nil, {"x": model}, {"m3": model}})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n2.start()
	n3.start()
	v := newView(nodes, []string{"", "x", "m3"})
	poll(t, "n1 to see x on n2 and m3 on n3", 2*time.Minute, func() bool { return v.sees(0, 1) && v.sees(0, 2) })

	killMidStream(t, n1, n2, v)
	killMidAnnounce(t, n1, n3, v, model)
	killMidPull(t, lab, n2, n3, v, model)
}

// killMidStream kills n2 while it streams to n1's client: the client gets a clean error, not a
// hang, and n2 restarts and serves again.
func killMidStream(t *testing.T, n1, n2 *meshNode, v *view) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	stream, err := pb.NewInferenceServiceClient(n1.conn).Complete(ctx, &pb.CompleteRequest{Model: "x", Prompt: "Once upon a time",
		Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(4000)), IgnoreEos: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	oldRun := peerEntry(t, n1, v.ids[1]).GetCapability().GetSequence()
	n2.kill()
	killed := time.Now()
	_, final, err := drain(stream)
	gap := time.Since(killed)
	if err == nil {
		// A node that continues the stream elsewhere would end it well, served by another
		// node; x has no other server here.
		t.Fatalf("stream ended well after its only server was killed: %v", final)
	}
	if code := status.Code(err); code == codes.DeadlineExceeded || code == codes.Canceled {
		t.Fatalf("the stream hung after the kill: %v", err)
	}
	t.Logf("n2 killed mid-stream: n1's client got %v after %v", status.Code(err), gap.Round(time.Millisecond))
	if _, err := pb.NewNodeServiceClient(n1.conn).Health(t.Context(), &pb.HealthRequest{}); err != nil {
		t.Fatalf("n1 stopped serving: %v", err)
	}
	n2.start()
	took := poll(t, "n1 to see the restarted n2's x", 2*time.Minute, func() bool {
		return v.sees(0, 1) && peerEntry(t, n1, v.ids[1]).GetCapability().GetSequence() > oldRun
	})
	if got := forwardedServer(t, n1, "x"); got != v.ids[1] {
		t.Fatalf("x after n2's restart served by %s, want n2 %s", got, v.ids[1])
	}
	t.Logf("restarted n2's announcements in n1's table %v after its start", took.Round(10*time.Millisecond))
}

// killMidAnnounce kills n3 just as an announcement of it reaches n1 (the next is due within
// the interval) and restarts it with the same identity and one more model, within the TTL: n1
// still remembers the old run's sequence, and must take the new run's as newer, not as replays.
func killMidAnnounce(t *testing.T, n1, n3 *meshNode, v *view, model string) {
	before := peerEntry(t, n1, v.ids[2]).GetCapability().GetSequence()
	poll(t, "a new announcement of n3 at n1", time.Minute, func() bool {
		return peerEntry(t, n1, v.ids[2]).GetCapability().GetSequence() > before
	})
	last := peerEntry(t, n1, v.ids[2]).GetCapability().GetSequence()
	n3.kill()
	n3.declare(fmt.Sprintf("[models.m3b]\npath = %q\nthreads = 1\ncontext_length = 512\n", model))
	n3.start()
	if id := n3.peerID(); id != v.ids[2] {
		t.Fatalf("n3 restarted as %s, was %s", id, v.ids[2])
	}
	took := poll(t, "n1 to take the restarted n3's announcements", time.Minute, func() bool {
		p := peerEntry(t, n1, v.ids[2])
		for _, m := range p.GetCapability().GetModels() {
			if m.GetName() == "m3b" && p.GetCapability().GetSequence() > last {
				return true
			}
		}
		return false
	})
	t.Logf("n3 killed mid-announce: n1 took its restarted run's announcements %v after the restart", took.Round(10*time.Millisecond))
}

// killMidPull kills n3 halfway through pulling x from n2 over a slow link: no half-written
// blob is taken for the model, and after the restart the pull resumes where it stopped (fewer
// bytes cross the link than the file holds) and the blob verifies.
func killMidPull(t *testing.T, lab *netlab.Lab, n2, n3 *meshNode, v *view, model string) {
	lab.SetLoss(0) // a steady link, so halfway is a place the test can catch
	defer lab.SetLoss(labLoss)
	fi, err := os.Stat(model)
	if err != nil {
		t.Fatal(err)
	}
	lab.SetRate(int(fi.Size() / 8)) // about 8 s for the whole file
	defer lab.SetRate(0)
	poll(t, "n3 to see x on n2 with its digest", time.Minute, func() bool { return n3.announcing("x") == 1 })
	pulling := make(chan string, 1)
	go func() {
		out, stderr, code := syn4pseIn(t, n3.ns, n3.dir, nil, "", "models", "pull", "x") // fails when n3 dies under it
		pulling <- fmt.Sprintf("exit %d: %s%s", code, out, stderr)
	}()
	partial := filepath.Join(n3.dir, "data", "models", "partial")
	poll(t, "half of x to arrive at n3", time.Minute, func() bool {
		select {
		case res := <-pulling:
			t.Fatalf("the pull ended before the kill: %s", res)
		default:
		}
		return partialSize(partial) > fi.Size()/2
	})
	n3.kill()
	<-pulling
	arrived := partialSize(partial)
	digest := modelDigest(t, n2, "x")
	blob := filepath.Join(n3.dir, "data", "models", "blobs", strings.Replace(digest, ":", "-", 1))
	if _, err := os.Stat(blob); err == nil {
		t.Fatalf("a blob of x is in n3's store after a kill mid-pull")
	}

	n3.start()
	if d := modelDigest(t, n3, "x"); d != "" {
		t.Fatalf("after the kill n3 lists x with digest %s", d)
	}
	poll(t, "the restarted n3 to see x on n2", time.Minute, func() bool { return n3.announcing("x") == 1 })
	base := lab.Nodes()[2].Bytes.Load()
	out, stderr, code := n3.run("models", "pull", "x")
	if code != 0 || !strings.Contains(out, "pulled x") {
		t.Fatalf("pull after the restart: %d %s %s", code, out, stderr)
	}
	resumed := lab.Nodes()[2].Bytes.Load() - base
	if resumed >= fi.Size() {
		t.Fatalf("the restarted pull took %d bytes for a %d-byte file with %d already here: it did not resume", resumed, fi.Size(), arrived)
	}
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); "sha256:"+hex.EncodeToString(sum[:]) != digest || modelDigest(t, n3, "x") != digest {
		t.Fatalf("n3's blob of x does not verify against %s", digest)
	}
	if got := n3.servedBy("x"); got != v.ids[2] {
		t.Fatalf("x on n3 served by %s", got)
	}
	t.Logf("n3 killed mid-pull with %d of %d bytes: the restarted pull moved %d bytes (packets, headers and gossip included) and verified", arrived, fi.Size(), resumed)
}

// connectedPeers is how many peers n has a connection to.
func connectedPeers(t *testing.T, n *meshNode) int32 {
	t.Helper()
	st, err := pb.NewNodeServiceClient(n.conn).MeshStatus(t.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st.GetConnectedPeers()
}

// forwardedServer sends a short completion for model to n and returns the node that served it.
func forwardedServer(t *testing.T, n *meshNode, model string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stream, err := pb.NewInferenceServiceClient(n.conn).Complete(ctx, &pb.CompleteRequest{Model: model, Prompt: "hi",
		Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(4)), IgnoreEos: true}})
	if err != nil {
		t.Fatal(err)
	}
	_, final, err := drain(stream)
	if err != nil {
		t.Fatalf("%s through %s: %v", model, n.name, err)
	}
	return final.GetServedBy()
}

// peerEntry is n's table entry for the peer id (empty when absent).
func peerEntry(t *testing.T, n *meshNode, id string) *pb.PeerInfo {
	t.Helper()
	res, err := pb.NewNodeServiceClient(n.conn).ListPeers(t.Context(), &pb.ListPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.GetPeers() {
		if p.GetPeerId() == id {
			return p
		}
	}
	return &pb.PeerInfo{}
}

// modelDigest is the digest n lists for its model ("" when it has none or no such model).
func modelDigest(t *testing.T, n *meshNode, model string) string {
	t.Helper()
	res, err := pb.NewModelServiceClient(n.conn).ListModels(t.Context(), &pb.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.GetModels() {
		if m.GetName() == model && m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE {
			return m.GetDigest()
		}
	}
	return ""
}

// partialSize is the size of the largest partial blob in dir (sidecar notes aside).
func partialSize(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var size int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil && !strings.HasSuffix(e.Name(), ".json") {
			size = max(size, info.Size())
		}
	}
	return size
}
