package node_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/access"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/p2p"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// The keys of these tests: long and distinctive, so that a log line holding one is found.
const (
	testKey  = "sk-syn4pse-test-key-7f3a9c1e5b"
	otherKey = "sk-syn4pse-second-key-2d8e4a6c0f"
	wrongKey = "sk-syn4pse-wrong-key-9b1d3f5a7e"
)

// keyedConfig is a node on loopback with testKey and otherKey, serving Ollama's API too.
func keyedConfig(t *testing.T, decls ...config.Model) *config.Config {
	return &config.Config{
		DataDir: t.TempDir(),
		Server: config.Server{Host: "127.0.0.1", ShutdownTimeout: 10 * time.Second, Ollama: true,
			APIKeys: []string{testKey, otherKey}},
		Log:       config.Log{Level: "debug", Format: "text"},
		Models:    decls,
		Lifecycle: config.Lifecycle{KeepAlive: 5 * time.Minute},
	}
}

// startConfigured runs a node with cfg until the test ends.
func startConfigured(t *testing.T, cfg *config.Config) *node.Node {
	t.Helper()
	n, err := node.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n
}

// syncBuffer collects log output written from several goroutines.
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

// captureLogs sends every log record, debug ones too, to the returned buffer until the test ends.
func captureLogs(t *testing.T) *syncBuffer {
	logs := &syncBuffer{}
	before := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(before) })
	return logs
}

// httpStatus makes one request with the Authorization header auth ("" for none) and checks the
// answer: status want, and for a refusal WWW-Authenticate and a JSON error body.
func httpStatus(t *testing.T, client *http.Client, method, url, auth string, want int) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != want {
		t.Fatalf("%s %s with %q: %d, want %d", method, url, auth, res.StatusCode, want)
	}
	if want != http.StatusUnauthorized {
		return
	}
	if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("%s %s: WWW-Authenticate = %q", method, url, res.Header.Get("WWW-Authenticate"))
	}
	var body struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || len(body.Error) == 0 {
		t.Errorf("%s %s: refusal body: %v", method, url, err)
	}
}

// TestAPIKeys: with server.api_keys set, every route of the HTTP and Ollama ports but /healthz
// and every gRPC call but the health service needs a key; the OpenAI SDK's api key is one; and
// no key, right or wrong, reaches the log.
func TestAPIKeys(t *testing.T) {
	logs := captureLogs(t)
	n := startConfigured(t, keyedConfig(t, tinyDecl("tiny")))

	client := &http.Client{}
	for _, base := range []string{"http://" + n.HTTPAddr(), "http://" + n.OllamaAddr()} {
		route := "/v1/models"
		if strings.HasSuffix(base, n.OllamaAddr()) {
			route = "/api/tags"
		}
		httpStatus(t, client, "GET", base+route, "", http.StatusUnauthorized)
		httpStatus(t, client, "GET", base+route, "Bearer "+wrongKey, http.StatusUnauthorized)
		httpStatus(t, client, "GET", base+route, "Basic "+testKey, http.StatusUnauthorized)
		httpStatus(t, client, "POST", base+"/api/chat", "", http.StatusUnauthorized)
		httpStatus(t, client, "GET", base+route, "Bearer "+testKey, http.StatusOK)
		httpStatus(t, client, "GET", base+route, "Bearer "+otherKey, http.StatusOK)
	}
	httpStatus(t, client, "GET", "http://"+n.HTTPAddr()+"/healthz", "", http.StatusOK)
	httpStatus(t, client, "GET", "http://"+n.HTTPAddr()+"/api/status", "", http.StatusUnauthorized)
	httpStatus(t, client, "GET", "http://"+n.HTTPAddr()+"/api/status", "Bearer "+testKey, http.StatusOK)
	// Metrics tell what runs and who asks: a scraper sends a key like any client.
	httpStatus(t, client, "GET", "http://"+n.HTTPAddr()+"/metrics", "", http.StatusUnauthorized)
	httpStatus(t, client, "GET", "http://"+n.HTTPAddr()+"/metrics", "Bearer "+testKey, http.StatusOK)

	// The OpenAI SDK sends its api key as the bearer token.
	params := openai.ChatCompletionNewParams{Model: "tiny", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		MaxTokens: openai.Int(4), Seed: openai.Int(1)}
	sdk := func(key string) openai.Client {
		return openai.NewClient(option.WithBaseURL("http://"+n.HTTPAddr()+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	}
	good, bad := sdk(testKey), sdk(wrongKey)
	if res, err := good.Chat.Completions.New(t.Context(), params); err != nil || len(res.Choices) != 1 {
		t.Fatalf("OpenAI SDK with the key: %v", err)
	}
	var apiErr *openai.Error
	if _, err := bad.Chat.Completions.New(t.Context(), params); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Code != "invalid_api_key" {
		t.Fatalf("OpenAI SDK with a wrong key: %v", err)
	}

	// gRPC: a real client, with and without per-call credentials.
	dialGRPC := func(opts ...grpc.DialOption) *grpc.ClientConn {
		conn, err := newConn(n.GRPCAddr(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	bare, wrong, keyed := dialGRPC(), dialGRPC(grpc.WithPerRPCCredentials(access.Bearer(wrongKey, false))),
		dialGRPC(grpc.WithPerRPCCredentials(access.Bearer(testKey, false)))
	for _, conn := range []*grpc.ClientConn{bare, wrong} {
		if _, err := pb.NewNodeServiceClient(conn).GetInfo(t.Context(), &pb.GetInfoRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("unary call without a valid key: %v, want UNAUTHENTICATED", err)
		}
		stream, err := pb.NewInferenceServiceClient(conn).Chat(t.Context(), &pb.ChatRequest{Model: "tiny",
			Messages: []*pb.Message{{Role: "user", Content: "Hi"}}, Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(2))}})
		if err == nil {
			_, _, err = collect(stream)
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("stream without a valid key: %v, want UNAUTHENTICATED", err)
		}
	}
	if _, err := pb.NewNodeServiceClient(keyed).GetInfo(t.Context(), &pb.GetInfoRequest{}); err != nil {
		t.Fatalf("unary call with the key: %v", err)
	}
	stream, err := pb.NewInferenceServiceClient(keyed).Chat(t.Context(), &pb.ChatRequest{Model: "tiny",
		Messages: []*pb.Message{{Role: "user", Content: "Hi"}}, Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(2))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, final, err := collect(stream); err != nil || final == nil {
		t.Fatalf("stream with the key: final %v, %v", final, err)
	}
	// Health stays open, as /healthz does, for container and load-balancer probes.
	if res, err := healthpb.NewHealthClient(bare).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health without a key: %v, %v", res, err)
	}

	out := logs.String()
	if !strings.Contains(out, "request refused") {
		t.Fatalf("no refusal was logged; the capture misses the node's log:\n%s", out)
	}
	for _, key := range []string{testKey, otherKey, wrongKey} {
		if strings.Contains(out, key) {
			t.Fatalf("the log holds a key (%s):\n%s", key, out)
		}
	}
}

// TestExposedNodeWithoutKeysRefusesToStart: a node on every interface with no key and no
// explicit opt-out does not start, and says both ways to fix it.
func TestExposedNodeWithoutKeysRefusesToStart(t *testing.T) {
	cfg := keyedConfig(t)
	cfg.Server.Host, cfg.Server.APIKeys = "0.0.0.0", nil
	_, err := node.Start(t.Context(), cfg)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "server.api_keys") || !strings.Contains(err.Error(), "server.allow_unauthenticated = true") {
		t.Fatalf("Start on 0.0.0.0 without keys: %v", err)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key, PEM, and returns their
// paths and a pool that trusts the certificate.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syn4pse test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS: with server.tls_cert and server.tls_key, the HTTP, Ollama and gRPC ports serve TLS
// (HTTP/2 where the client offers it) and still want the key; a bad pair stops the start.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	cfg := keyedConfig(t)
	cfg.Server.TLSCert, cfg.Server.TLSKey = certFile, keyFile
	n := startConfigured(t, cfg)

	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	httpStatus(t, tlsClient, "GET", "https://"+n.HTTPAddr()+"/healthz", "", http.StatusOK)
	httpStatus(t, tlsClient, "GET", "https://"+n.HTTPAddr()+"/v1/models", "", http.StatusUnauthorized)
	httpStatus(t, tlsClient, "GET", "https://"+n.HTTPAddr()+"/v1/models", "Bearer "+testKey, http.StatusOK)
	httpStatus(t, tlsClient, "GET", "https://"+n.OllamaAddr()+"/api/tags", "Bearer "+testKey, http.StatusOK)
	res, err := tlsClient.Get("https://" + n.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 2 || res.TLS == nil {
		t.Errorf("HTTPS answered %s, TLS %v; want HTTP/2 over TLS", res.Proto, res.TLS != nil)
	}
	// Plain HTTP to the TLS port gets no API.
	if res, err := http.Get("http://" + n.HTTPAddr() + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered 200 on the TLS port")
		}
	}

	conn, err := grpc.NewClient("passthrough:///"+n.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})),
		grpc.WithPerRPCCredentials(access.Bearer(testKey, true)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewNodeServiceClient(conn).GetInfo(t.Context(), &pb.GetInfoRequest{}); err != nil {
		t.Fatalf("gRPC over TLS with the key: %v", err)
	}
	plain := grpcConn(t, n)
	if _, err := pb.NewNodeServiceClient(plain).GetInfo(t.Context(), &pb.GetInfoRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext gRPC to the TLS port: %v, want UNAVAILABLE", err)
	}

	// A key that is not the certificate's, or a file that is missing, stops the start with a
	// message naming both keys.
	_, otherKeyFile, _ := writeCert(t)
	for _, pair := range [][2]string{{certFile, otherKeyFile}, {certFile, filepath.Join(t.TempDir(), "missing.pem")}} {
		bad := keyedConfig(t)
		bad.Server.TLSCert, bad.Server.TLSKey = pair[0], pair[1]
		if n, err := node.Start(t.Context(), bad); err == nil {
			n.Shutdown(t.Context())
			t.Fatalf("started with tls_cert %s and tls_key %s", pair[0], pair[1])
		} else if !strings.Contains(err.Error(), "server.tls_cert") || !strings.Contains(err.Error(), "server.tls_key") {
			t.Fatalf("bad TLS pair: %v", err)
		}
	}
}

// TestPeersNeedNoKey: both nodes of a mesh require keys of their own; a request that node B
// forwards to node A over libp2p runs on A without A's key, since the swarm key admitted B.
func TestPeersNeedNoKey(t *testing.T) {
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	aCfg := meshConfig(t, key, "a", nil, tinyDecl("tiny"))
	aCfg.Server.APIKeys = []string{testKey}
	a := startConfigured(t, aCfg)
	aConn, err := newConn(a.GRPCAddr(), grpc.WithPerRPCCredentials(access.Bearer(testKey, false)))
	if err != nil {
		t.Fatal(err)
	}
	defer aConn.Close()
	st, err := pb.NewNodeServiceClient(aConn).MeshStatus(t.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bCfg := meshConfig(t, key, "b", st.GetListenAddrs())
	bCfg.Server.APIKeys = []string{otherKey}
	b := startConfigured(t, bCfg)
	bConn, err := newConn(b.GRPCAddr(), grpc.WithPerRPCCredentials(access.Bearer(otherKey, false)))
	if err != nil {
		t.Fatal(err)
	}
	defer bConn.Close()

	deadline := time.Now().Add(30 * time.Second)
	for {
		peers, err := pb.NewNodeServiceClient(bConn).ListPeers(t.Context(), &pb.ListPeersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(peers.GetPeers()) == 1 && len(peers.GetPeers()[0].GetCapability().GetModels()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never saw A's model: %v", peers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stream, err := pb.NewInferenceServiceClient(bConn).Chat(t.Context(), &pb.ChatRequest{Model: "tiny",
		Messages: []*pb.Message{{Role: "user", Content: "Hi"}}, Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(2))}})
	if err != nil {
		t.Fatal(err)
	}
	_, final, err := collect(stream)
	if err != nil {
		t.Fatalf("forwarded chat: %v", err)
	}
	if final.GetServedBy() != a.PeerID() {
		t.Fatalf("served by %q, want A (%s)", final.GetServedBy(), a.PeerID())
	}
}
