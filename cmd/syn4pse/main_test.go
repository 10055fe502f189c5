package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/internal/netlab"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// binary is the syn4pse command built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "syn4pse-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "syn4pse")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build syn4pse:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// servedNode is a `syn4pse serve` process a test started.
type servedNode struct {
	cmd *exec.Cmd
	log *syncBuffer
	// exited receives the process's exit, once.
	exited chan error
}

// startServe writes conf as dir/syn4pse.toml and starts `syn4pse serve` in dir; the node is
// killed when the test ends, and its log shown when the test failed.
func startServe(t *testing.T, dir, conf string) *servedNode {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "syn4pse.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &servedNode{cmd: exec.Command(binary, "serve"), log: &syncBuffer{}, exited: make(chan error, 1)}
	n.cmd.Dir = dir
	n.cmd.Env = append(os.Environ(), "SYN4PSE_CONFIG=") // only the test's own config
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.exited
		if t.Failed() {
			t.Logf("serve log:\n%s", n.log.String())
		}
	})
	return n
}

// syn4pse runs the binary with args and returns stdout, stderr and the exit code.
func syn4pse(t *testing.T, dir string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return syn4pseIn(t, nil, dir, nil, stdin, args...)
}

// syn4pseEnv is syn4pse with the variables env added to the environment.
func syn4pseEnv(t *testing.T, dir string, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return syn4pseIn(t, nil, dir, env, stdin, args...)
}

// syn4pseIn is syn4pseEnv run inside a lab node's network namespace (ns nil: this one).
func syn4pseIn(t *testing.T, ns *netlab.Node, dir string, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	if ns != nil {
		cmd = ns.CommandContext(ctx, binary, args...)
	}
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "SYN4PSE_CONFIG="), env...) // only the test's own config
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func TestServeAndRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tinygguf.Write(filepath.Join(dir, "models", "tiny.gguf"), tinygguf.Options{Seed: 5}); err != nil {
		t.Fatal(err)
	}
	if err := tinygguf.WriteVisionProjector(filepath.Join(dir, "models", "tiny-mmproj.gguf"), 5); err != nil {
		t.Fatal(err)
	}
	grpcPort, httpPort := freePort(t), freePort(t)
	conf := fmt.Sprintf(`data_dir = "data"

[server]
host = "127.0.0.1"
grpc_port = %d
http_port = %d

[backends.llm.llama_cpp]
enabled = true
engine = "llama_cpp"
model = "models/tiny.gguf"
mmproj = "models/tiny-mmproj.gguf"
threads = 1
context_length = 512
`, grpcPort, httpPort)
	serve := startServe(t, dir, conf)

	// The client commands read the same syn4pse.toml from the working directory.
	deadline := time.Now().Add(time.Minute)
	for {
		out, _, code := syn4pse(t, dir, "", "status")
		if code == 0 && strings.Contains(out, "1 model(s) ready") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	checkCPUVariant(t, dir)
	// The log says where the dashboard is, and the page is there.
	dash := fmt.Sprintf("dashboard=http://127.0.0.1:%d/", httpPort)
	if !strings.Contains(serve.log.String(), dash) {
		t.Errorf("the serve log does not say %s:\n%s", dash, serve.log.String())
	}
	if res, err := http.Get(strings.TrimPrefix(dash, "dashboard=")); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("GET the dashboard: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if out, stderr, code := syn4pse(t, dir, "", "health"); code != 0 || strings.TrimSpace(out) != "serving" {
		t.Fatalf("health: code %d, %q %q", code, out, stderr)
	}

	out, stderr, code := syn4pse(t, dir, "", "models", "list")
	if code != 0 || !strings.Contains(out, "tiny") || !strings.Contains(out, "loaded") || !strings.Contains(out, " llm ") {
		t.Fatalf("models list: code %d\n%s%s", code, out, stderr)
	}

	// Lifecycle by hand: pin, see it in ps, unload.
	if out, stderr, code := syn4pse(t, dir, "", "models", "load", "tiny", "--keep-alive", "-1"); code != 0 || !strings.Contains(out, "tiny loaded") {
		t.Fatalf("models load: %d %s %s", code, out, stderr)
	}
	if out, _, code := syn4pse(t, dir, "", "ps"); code != 0 || !strings.Contains(out, "never") {
		t.Fatalf("ps: %d %s", code, out)
	}
	if out, _, code := syn4pse(t, dir, "", "models", "unload", "tiny"); code != 0 {
		t.Fatalf("models unload: %d %s", code, out)
	}
	if out, _, code := syn4pse(t, dir, "", "ps"); code != 0 || !strings.Contains(out, "no model loaded") {
		t.Fatalf("ps after unload: %d %s", code, out)
	}

	out, stderr, code = syn4pse(t, dir, "", "run", "tiny", "--max-tokens", "8", "--seed", "1", "Hello", "there")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("run: code %d, stdout %q, stderr %q", code, out, stderr)
	}

	// Images go with the prompt: each fills VisionImageTokens prompt positions.
	promptTokens := func(args ...string) int {
		t.Helper()
		args = append([]string{"run", "tiny", "--max-tokens", "2", "--verbose"}, args...)
		out, stderr, code := syn4pse(t, dir, "", args...)
		var n int
		if _, err := fmt.Sscanf(stderr[strings.LastIndex(stderr, "[")+1:], "%d prompt tokens", &n); code != 0 || err != nil {
			t.Fatalf("%v: code %d, %v, stdout %q, stderr %q", args, code, err, out, stderr)
		}
		return n
	}
	imagePath := filepath.Join(dir, "gradient.png")
	if err := os.WriteFile(imagePath, pngGradient(t), 0o644); err != nil {
		t.Fatal(err)
	}
	plain, one, two := promptTokens("Describe"), promptTokens("--image", imagePath, "Describe"), promptTokens("--image", imagePath, "--image", imagePath, "Describe")
	if one-plain < tinygguf.VisionImageTokens || two-one != one-plain {
		t.Fatalf("prompt tokens with 0, 1, 2 images: %d %d %d", plain, one, two)
	}
	if _, stderr, code := syn4pse(t, dir, "", "run", "tiny", "--image", "missing.png", "Describe"); code != 1 || !strings.Contains(stderr, "missing.png") {
		t.Fatalf("missing image: code %d, %q", code, stderr)
	}

	// A piped prompt works the same.
	out, _, code = syn4pse(t, dir, "Tell me a story", "run", "tiny", "--max-tokens", "4", "--seed", "2")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("piped run: code %d, %q", code, out)
	}

	// The interactive chat keeps the conversation, and /clear forgets it.
	conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///127.0.0.1:%d", grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	maxTokens, seed := int32(3), uint32(1)
	var chatOut, chatErr bytes.Buffer
	session := &chatSession{client: pb.NewInferenceServiceClient(conn), target: conn.Target(), model: "tiny",
		sampling: &pb.SamplingParams{MaxTokens: &maxTokens, Seed: &seed, IgnoreEos: true}, out: &chatOut, errOut: &chatErr}
	if err := session.interactive(t.Context(), strings.NewReader("hello\nhow are you\n")); err != nil {
		t.Fatal(err)
	}
	if len(session.history) != 4 || session.history[2].GetContent() != "how are you" || strings.Count(chatErr.String(), ">>> ") != 3 {
		t.Fatalf("history %v, prompts %q", session.history, chatErr.String())
	}
	if err := session.interactive(t.Context(), strings.NewReader("/clear\nagain\n/bye\nnever sent\n")); err != nil {
		t.Fatal(err)
	}
	if len(session.history) != 2 || session.history[0].GetContent() != "again" {
		t.Fatalf("after /clear: %v", session.history)
	}

	_, stderr, code = syn4pse(t, dir, "", "run", "nope", "hi")
	if code != 1 || !strings.Contains(stderr, "available: tiny") {
		t.Fatalf("unknown model: code %d, %q", code, stderr)
	}

	_, stderr, code = syn4pse(t, dir, "", "run")
	if code != 2 || !strings.Contains(stderr, "MODEL") {
		t.Fatalf("run without a model: code %d, %q", code, stderr)
	}

	// SIGTERM stops the node cleanly.
	serve.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-serve.exited:
		serve.exited <- err
		if err != nil {
			t.Fatalf("serve exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

func TestNoNodeAnswers(t *testing.T) {
	_, stderr, code := syn4pse(t, t.TempDir(), "", "--addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "models", "list")
	if code != 1 || !strings.Contains(stderr, "no node answers") {
		t.Fatalf("code %d, %q", code, stderr)
	}
}

func TestBadConfigExitsWithUsageCode(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "syn4pse.toml"), []byte("[server]\nhtp_port = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := syn4pse(t, dir, "", "serve")
	if code != 2 || !strings.Contains(stderr, "htp_port") {
		t.Fatalf("code %d, %q", code, stderr)
	}
}

// checkCPUVariant asserts that the node in dir runs the CPU variant ggml's loader picks for
// this CPU from the libraries `task test` built (engine/llamacpp's tests check that choice
// against /proc/cpuinfo), and says so in `syn4pse status`.
func checkCPUVariant(t *testing.T, dir string) {
	t.Helper()
	out, _, code := syn4pse(t, dir, "", "status")
	if code != 0 {
		t.Fatalf("status: code %d: %s", code, out)
	}
	libs := os.Getenv("SYN4PSE_ENGINE_LIBRARY_PATH")
	if libs == "" {
		if !strings.Contains(out, "cpu code  builtin") {
			t.Fatalf("without a library path the node should run the builtin CPU code:\n%s", out)
		}
		return
	}
	b, err := llamacpp.LoadBackends(llamacpp.BackendOptions{LibraryPath: []string{libs}})
	if err != nil {
		t.Fatal(err)
	}
	if b.CPUVariant == llamacpp.Builtin {
		t.Fatalf("no runnable CPU variant in %s: %+v", libs, b.CPUVariants)
	}
	if want := "cpu code  " + b.CPUVariant + " (variant library"; !strings.Contains(out, want) {
		t.Fatalf("status should say %q:\n%s", want, out)
	}
	if !strings.Contains(out, "device    CPU") {
		t.Fatalf("status lists no CPU device:\n%s", out)
	}
}

// pngGradient is a small PNG image.
func pngGradient(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 24, 16))
	for y := range 16 {
		for x := range 24 {
			img.Set(x, y, color.RGBA{uint8(10 * x), uint8(15 * y), 64, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
