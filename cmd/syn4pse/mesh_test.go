package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ekisa-team/syn4pse/internal/netlab"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// meshNode is one `syn4pse serve` process of a test mesh on loopback.
type meshNode struct {
	t        *testing.T
	name     string
	dir      string
	grpcPort int
	httpPort int
	cmd      *exec.Cmd
	exited   chan struct{}
	log      syncBuffer
	conn     *grpc.ClientConn
	// ns is the lab namespace the node runs in (chaos tests); nil runs it on this loopback.
	ns *netlab.Node
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newMeshNode writes a node's config: loopback only, no mDNS or NAT (they would send traffic
// to the LAN), fast announcements and a short TTL. models maps model names to files.
func newMeshNode(t *testing.T, name string, models map[string]string) *meshNode {
	t.Helper()
	return newMeshNodeAt(t, nil, name, models)
}

// newMeshNodeAt is newMeshNode for a node in a lab namespace (ns nil: this loopback). In the
// lab the mesh runs on the node's lab address, and announcements (1 s, TTL 4 s) allow for the
// lab's delay and loss; the APIs stay on the namespace's own loopback, reached through ns.Dial.
func newMeshNodeAt(t *testing.T, ns *netlab.Node, name string, models map[string]string) *meshNode {
	t.Helper()
	n := &meshNode{t: t, name: name, dir: t.TempDir(), ns: ns}
	listen, announce, ttl := "/ip4/127.0.0.1/tcp/0", "500ms", "3s"
	if ns == nil {
		n.grpcPort, n.httpPort = freePort(t), freePort(t)
	} else {
		n.grpcPort, n.httpPort = 50051, 8080 // the namespace's own ports
		listen, announce, ttl = fmt.Sprintf("/ip4/%s/tcp/4001", ns.Addr), "1s", "4s"
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "data_dir = \"data\"\n[server]\nhost = \"127.0.0.1\"\ngrpc_port = %d\nhttp_port = %d\nshutdown_timeout = \"2s\"\n", n.grpcPort, n.httpPort)
	fmt.Fprintf(&conf, "[p2p]\nlisten = [%q]\nmdns = false\nnat = false\nname = %q\nannounce_interval = %q\npeer_ttl = %q\n", listen, name, announce, ttl)
	for model, path := range models {
		fmt.Fprintf(&conf, "[models.%s]\npath = %q\nthreads = 1\ncontext_length = 4096\n", model, path)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "syn4pse.toml"), []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// run runs a client command against this node's directory and config.
func (n *meshNode) run(args ...string) (string, string, int) {
	n.t.Helper()
	return syn4pseIn(n.t, n.ns, n.dir, nil, "", args...)
}

func (n *meshNode) start() {
	t := n.t
	t.Helper()
	n.cmd = exec.Command(binary, "serve")
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if n.ns != nil {
		n.cmd = n.ns.Command(binary, "serve")
		dial = append(dial, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return n.ns.Dial(ctx, "tcp", addr)
		}))
	}
	n.cmd.Dir = n.dir
	n.cmd.Env = append(os.Environ(), "SYN4PSE_CONFIG=")
	n.cmd.Stdout, n.cmd.Stderr = &n.log, &n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.exited
		if t.Failed() {
			t.Logf("log of %s:\n%s", n.name, n.log.String())
		}
	})
	conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///127.0.0.1:%d", n.grpcPort), dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n.conn = conn
	n.waitFor("serving", func() bool {
		_, err := pb.NewNodeServiceClient(conn).Health(t.Context(), &pb.HealthRequest{})
		return err == nil
	})
}

func (n *meshNode) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

func (n *meshNode) peerID() string {
	st, err := pb.NewNodeServiceClient(n.conn).MeshStatus(n.t.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		n.t.Fatal(err)
	}
	return st.GetPeerId()
}

// peers returns the peer IDs in this node's table announcing model ("" for any).
func (n *meshNode) peers(model string) []string {
	res, err := pb.NewNodeServiceClient(n.conn).ListPeers(n.t.Context(), &pb.ListPeersRequest{})
	if err != nil {
		return nil
	}
	var ids []string
	for _, p := range res.GetPeers() {
		for _, m := range p.GetCapability().GetModels() {
			if model == "" || m.GetName() == model && m.GetLoaded() {
				ids = append(ids, p.GetPeerId())
				break
			}
		}
		if model == "" && len(p.GetCapability().GetModels()) == 0 {
			ids = append(ids, p.GetPeerId())
		}
	}
	return ids
}

// waitFor polls cond for up to a minute: a liveness bound, not a timing assertion.
func (n *meshNode) waitFor(what string, cond func() bool) time.Duration {
	n.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > time.Minute {
			n.t.Fatalf("%s: waited a minute for %s", n.name, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func (n *meshNode) activeRequests(model string) int32 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res, err := pb.NewModelServiceClient(n.conn).ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		return 0
	}
	for _, m := range res.GetModels() {
		if m.GetName() == model {
			return m.GetStats().GetActiveRequests()
		}
	}
	return 0
}

// invite runs `mesh invite` on n and returns the token from its last line.
func (n *meshNode) invite() string {
	out, stderr, code := n.run("mesh", "invite", "--expires", "1h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) == 0 {
		n.t.Fatalf("mesh invite: %d %s %s", code, out, stderr)
	}
	return lines[len(lines)-1]
}

func (n *meshNode) join(token string) {
	if out, stderr, code := n.run("mesh", "join", token); code != 0 {
		n.t.Fatalf("mesh join: %d %s %s", code, out, stderr)
	}
}

func writeModel(t *testing.T, size string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), size+".gguf")
	if err := tinygguf.Write(path, tinygguf.Options{Size: size, Seed: 9}); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMeshForwardsToThePeerWithTheModel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	model := writeModel(t, "tiny")
	a := newMeshNode(t, "alpha", map[string]string{"x": model})
	b := newMeshNode(t, "beta", nil)
	stranger := newMeshNode(t, "stranger", nil)

	token := formMesh(t, a, b)
	aID := a.peerID()
	took := b.waitFor("alpha's model in beta's table", func() bool { return len(b.peers("x")) == 1 })
	t.Logf("beta saw alpha's model %v after start", took)

	// Through beta's OpenAI API, served by alpha.
	client := openai.NewClient(option.WithBaseURL(fmt.Sprintf("http://127.0.0.1:%d/v1/", b.httpPort)), option.WithAPIKey("x"),
		option.WithMaxRetries(0), option.WithJSONSet("ignore_eos", true))
	params := openai.ChatCompletionNewParams{Model: "x", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")}, MaxTokens: openai.Int(8), Seed: openai.Int(3)}
	var httpRes *http.Response
	res, err := client.Chat.Completions.New(t.Context(), params, option.WithResponseInto(&httpRes))
	if err != nil || res.Usage.CompletionTokens != 8 {
		t.Fatalf("forwarded chat: %+v %v", res, err)
	}
	if got := httpRes.Header.Get("Syn4pse-Served-By"); got != aID {
		t.Fatalf("served by %q, want alpha %s", got, aID)
	}
	stream := client.Chat.Completions.NewStreaming(t.Context(), params, option.WithResponseInto(&httpRes))
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil || len(acc.Choices) != 1 || acc.Choices[0].Message.Content != res.Choices[0].Message.Content || httpRes.Header.Get("Syn4pse-Served-By") != aID {
		t.Fatalf("forwarded stream: %+v vs %q, err %v, served by %q", acc.Choices, res.Choices[0].Message.Content, err, httpRes.Header.Get("Syn4pse-Served-By"))
	}

	// Routing headers: local only finds nothing on beta; pinning alpha by name works.
	post := func(header, value string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", fmt.Sprintf("http://127.0.0.1:%d/v1/completions", b.httpPort),
			strings.NewReader(`{"model":"x","prompt":"hi","max_tokens":2,"ignore_eos":true}`))
		req.Header.Set(header, value)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	if res := post("Syn4pse-Local-Only", "true"); res.StatusCode != 404 {
		t.Fatalf("local only on beta: %d", res.StatusCode)
	}
	if res := post("Syn4pse-Node", "alpha"); res.StatusCode != 200 || res.Header.Get("Syn4pse-Served-By") != aID {
		t.Fatalf("pinned to alpha: %d %v", res.StatusCode, res.Header)
	}
	res2, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/peers", b.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res2.Body)
	res2.Body.Close()
	if !strings.Contains(string(body), aID) || !strings.Contains(string(body), `"node_name":"alpha"`) {
		t.Fatalf("/api/peers: %s", body)
	}
	// The peer's hardware travels in its capabilities: cores, RAM and the CPU code it runs. All
	// of x's slots (parallel is auto: 4 on a CPU) are free again with the next announcement
	// once alpha's last request has ended (an announcement may have caught it busy): a
	// liveness bound, not a timing check.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _, code := b.run("peers")
		// alpha's one link is beta: the LINKS column, just before the models.
		if code == 0 && strings.Contains(out, "alpha") && strings.Contains(out, "LINKS") && strings.Contains(out, "     1  x* 4/0") &&
			strings.Contains(out, " cores, ") && strings.Contains(out, " RAM, cpu ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("syn4pse peers: %d\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, _, code := b.run("mesh", "status"); code != 0 || !strings.Contains(out, "connected   1 peer(s)") {
		t.Fatalf("syn4pse mesh status: %d\n%s", code, out)
	}

	// A node with another mesh's key, told alpha's address, never joins.
	stranger.join(token)                                                    // alpha's addresses...
	if out, _, code := stranger.run("mesh", "init", "--force"); code != 0 { // ...but a key of its own
		t.Fatalf("mesh init --force: %s", out)
	}
	stranger.start()
	time.Sleep(3 * time.Second) // a few announcement rounds
	if got := stranger.peers(""); len(got) != 0 {
		t.Fatalf("stranger sees peers %v", got)
	}
	for _, n := range []*meshNode{a, b} {
		for _, id := range n.peers("") {
			if id == stranger.peerID() {
				t.Fatalf("%s admitted the stranger", n.name)
			}
		}
	}
	if _, stderr, code := stranger.run("run", "x", "hi"); code != 1 || !strings.Contains(stderr, "no node") {
		t.Fatalf("stranger served x: %d %s", code, stderr)
	}
}

func TestMeshFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes with a 270 MB model")
	}
	model := writeModel(t, "bench")
	a := newMeshNode(t, "alpha", map[string]string{"x": model})
	c := newMeshNode(t, "gamma", map[string]string{"x": model})
	b := newMeshNode(t, "beta", nil)
	formMesh(t, a, c, b)
	b.waitFor("both servers of x", func() bool { return len(b.peers("x")) == 2 })

	servers := map[string]*meshNode{a.peerID(): a, c.peerID(): c}
	client := pb.NewInferenceServiceClient(b.conn)

	// 1. Kill the chosen server before it answers: the prompt takes seconds to evaluate.
	long := strings.Repeat("the cat sat on the mat and ", 300)
	type result struct {
		text  string
		final *pb.Final
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stream, err := client.Complete(context.Background(), &pb.CompleteRequest{Model: "x", Prompt: long,
			Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(4)), IgnoreEos: true}})
		if err != nil {
			done <- result{err: err}
			return
		}
		text, final, err := drain(stream)
		done <- result{text, final, err}
	}()
	var chosen *meshNode
	b.waitFor("a server to start the request", func() bool {
		for _, n := range servers {
			if n.activeRequests("x") > 0 {
				chosen = n
				return true
			}
		}
		return false
	})
	chosen.kill()
	r := <-done
	if r.err != nil || r.final == nil || servers[r.final.GetServedBy()] == chosen || servers[r.final.GetServedBy()] == nil {
		t.Fatalf("after killing %s before it answered: final %v, err %v", chosen.name, r.final, r.err)
	}
	survivor := servers[r.final.GetServedBy()]
	t.Logf("killed %s before it answered; %s served the request", chosen.name, survivor.name)

	// 2. Kill the survivor mid-stream: a clean error, beta keeps serving, the peer leaves.
	stream, err := client.Complete(t.Context(), &pb.CompleteRequest{Model: "x", Prompt: "Once upon a time",
		Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(2000)), IgnoreEos: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	survivor.kill()
	killed := time.Now()
	_, _, err = drain(stream)
	if err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("mid-stream kill: err = %v, want a clean stream error", err)
	}
	gone := b.waitFor("the dead peers to leave beta's table", func() bool { return len(b.peers("")) == 0 })
	t.Logf("dead peer left beta's table %v after the kill", time.Since(killed))
	_ = gone
	if _, err := pb.NewNodeServiceClient(b.conn).Health(t.Context(), &pb.HealthRequest{}); err != nil {
		t.Fatalf("beta stopped serving: %v", err)
	}
	_, stderr, code := b.run("run", "x", "hi")
	if code != 1 || !strings.Contains(stderr, "no node") {
		t.Fatalf("with no server left: %d %q", code, stderr)
	}
}

func drain(stream grpc.ServerStreamingClient[pb.GenerateResponse]) (string, *pb.Final, error) {
	var text strings.Builder
	var final *pb.Final
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), final, nil
		}
		if err != nil {
			return text.String(), final, err
		}
		text.WriteString(ev.GetDelta().GetText())
		if ev.GetFinal() != nil {
			final = ev.GetFinal()
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// declare appends TOML to the node's config (speech models, say).
func (n *meshNode) declare(toml string) {
	n.t.Helper()
	f, err := os.OpenFile(filepath.Join(n.dir, "syn4pse.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + toml + "\n"); err != nil {
		n.t.Fatal(err)
	}
}

// joinMesh makes first a mesh's founder (mesh init, then started) and joins the others to it
// with one invite, returned; they are not started.
func joinMesh(t *testing.T, first *meshNode, others ...*meshNode) (token string) {
	t.Helper()
	if out, stderr, code := first.run("mesh", "init"); code != 0 {
		t.Fatalf("mesh init: %s %s", out, stderr)
	}
	first.start()
	token = first.invite()
	for _, n := range others {
		n.join(token)
	}
	return token
}

// formMesh is joinMesh with the others started, in order.
func formMesh(t *testing.T, first *meshNode, others ...*meshNode) (token string) {
	t.Helper()
	token = joinMesh(t, first, others...)
	for _, n := range others {
		n.start()
	}
	return token
}
