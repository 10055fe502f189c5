package p2p

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/gologshim"
	manet "github.com/multiformats/go-multiaddr/net"
)

// testDialTimeout is short so a dial to a host without the key fails quickly.
const testDialTimeout = 2 * time.Second

func TestMain(m *testing.M) {
	// Keep libp2p (slog through gologshim), kad-dht (go-log) and our own logs to errors and
	// warnings, so test output stays readable.
	gologshim.SetDefaultHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	golog.SetAllLoggers(golog.LevelError)
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}

// newTestKey returns a fresh swarm key.
func newTestKey(t testing.TB) *SwarmKey {
	t.Helper()
	k, err := GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	return &k
}

// startTestHost starts a Host on loopback with a short dial timeout, closed at cleanup. An
// empty cfg.DataDir gets a temporary one.
func startTestHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if len(cfg.ListenAddrs) == 0 {
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = testDialTimeout
	}
	h, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start host: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close host: %v", err)
		}
	})
	return h
}

// addrStrings returns h's full addresses as strings, for Config.Bootstrap.
func addrStrings(h *Host) []string {
	var out []string
	for _, a := range h.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// infoOf returns h's AddrInfo, what a peer needs to dial it.
func infoOf(h *Host) peer.AddrInfo {
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Libp2p().Addrs()}
}

// waitUntil polls cond every 10ms until it holds or timeout passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connected(a, b *Host) bool {
	return a.Libp2p().Network().Connectedness(b.ID()) == network.Connected
}

func TestNewStandalone(t *testing.T) {
	_, err := New(t.Context(), Config{DataDir: t.TempDir()})
	if !errors.Is(err, ErrStandalone) {
		t.Fatalf("New without a key: %v, want ErrStandalone", err)
	}
}

func TestNewRejectsTransportsWithoutPSK(t *testing.T) {
	for _, addr := range []string{"/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/udp/0/quic-v1/webtransport"} {
		_, err := New(t.Context(), Config{DataDir: t.TempDir(), SwarmKey: newTestKey(t), ListenAddrs: []string{addr}})
		if err == nil || !strings.Contains(err.Error(), "only TCP") {
			t.Errorf("listen on %s: %v, want a refusal naming TCP", addr, err)
		}
	}
	_, err := New(t.Context(), Config{DataDir: t.TempDir(), SwarmKey: newTestKey(t), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap: []string{"/ip4/127.0.0.1/tcp/1"}})
	if err == nil || !strings.Contains(err.Error(), "/p2p/") {
		t.Errorf("bootstrap without a peer ID: %v, want a refusal", err)
	}
	// The default addresses are the config's (p2p.listen); the host takes none of its own.
	if _, err := New(t.Context(), Config{DataDir: t.TempDir(), SwarmKey: newTestKey(t)}); err == nil || !strings.Contains(err.Error(), "ListenAddrs is empty") {
		t.Errorf("no listen address: %v, want a refusal", err)
	}
}

func TestSameKeyConnects(t *testing.T) {
	key := newTestKey(t)
	a := startTestHost(t, Config{SwarmKey: key, Name: "alpha"})
	b := startTestHost(t, Config{SwarmKey: key, Name: "beta"})

	start := time.Now()
	if err := b.Connect(t.Context(), infoOf(a)); err != nil {
		t.Fatal(err)
	}
	t.Logf("connect with the same key: %v", time.Since(start))
	waitUntil(t, 5*time.Second, "both sides see the connection and the names", func() bool {
		return connected(a, b) && connected(b, a) && a.PeerName(b.ID()) == "beta" && b.PeerName(a.ID()) == "alpha"
	})
	if a.PubSub() == nil || a.DHT() == nil || a.Libp2p().ID() != a.ID() {
		t.Fatal("host parts missing")
	}

	var loopback bool
	for _, addr := range a.Addrs() {
		info, err := peer.AddrInfoFromP2pAddr(addr)
		if err != nil || info.ID != a.ID() {
			t.Errorf("address %s does not end in /p2p/%s", addr, a.ID())
		}
		loopback = loopback || manet.IsIPLoopback(addr)
	}
	if !loopback {
		t.Errorf("Addrs %v lack the loopback address", a.Addrs())
	}
}

// TestDifferentKeyRefused checks a host of another mesh never connects. How fast it fails is
// luck: each side decrypts the other's first bytes with the wrong key, and reads the garbage as
// a multistream length prefix. Measured over 200 dials: 77% see an impossible length and fail
// in about 1 ms, 23% wait for bytes that never come, until the dial timeout.
func TestDifferentKeyRefused(t *testing.T) {
	a := startTestHost(t, Config{SwarmKey: newTestKey(t)})
	other := startTestHost(t, Config{SwarmKey: newTestKey(t)})

	start := time.Now()
	err := other.Connect(t.Context(), infoOf(a))
	took := time.Since(start)
	if err == nil {
		t.Fatal("a host with another key connected")
	}
	t.Logf("connect with a different key fails in %v: %v", took, err)
	if took > testDialTimeout+time.Second {
		t.Errorf("took %v to fail, want at most the %v dial timeout", took, testDialTimeout)
	}
	if connected(a, other) {
		t.Fatal("the keyed host kept a connection from another mesh")
	}
}

func TestNoKeyDialFailsWithinTimeout(t *testing.T) {
	key := newTestKey(t)
	a := startTestHost(t, Config{SwarmKey: key})
	plain, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Close() })

	// A plain host dialling the keyed one reads the PSK nonce as a multistream message: it
	// fails at once or (about half the time) hangs until its deadline.
	ctx, cancel := context.WithTimeout(t.Context(), testDialTimeout)
	defer cancel()
	start := time.Now()
	err = plain.Connect(ctx, infoOf(a))
	took := time.Since(start)
	if err == nil {
		t.Fatal("a host without the key connected")
	}
	t.Logf("no-key host dialling a keyed host fails in %v: %v", took, err)
	if took > testDialTimeout+time.Second {
		t.Errorf("took %v, want about the %v deadline", took, testDialTimeout)
	}

	// The keyed host dialling the plain one: Connect bounds it with DialTimeout by itself.
	start = time.Now()
	err = a.Connect(context.Background(), peer.AddrInfo{ID: plain.ID(), Addrs: plain.Addrs()})
	took = time.Since(start)
	if err == nil {
		t.Fatal("connected to a host without the key")
	}
	t.Logf("keyed host dialling a no-key host fails in %v: %v", took, err)
	if took > testDialTimeout+time.Second {
		t.Errorf("took %v, want about the %v dial timeout", took, testDialTimeout)
	}

	// The keyed host still serves its mesh.
	b := startTestHost(t, Config{SwarmKey: key})
	if err := b.Connect(t.Context(), infoOf(a)); err != nil {
		t.Fatalf("keyed host unusable after the no-key dial: %v", err)
	}
}

func TestAllowlist(t *testing.T) {
	key := newTestKey(t)
	bDir := t.TempDir()
	bKey, err := LoadOrCreateIdentity(bDir)
	if err != nil {
		t.Fatal(err)
	}
	bID, err := peer.IDFromPrivateKey(bKey)
	if err != nil {
		t.Fatal(err)
	}
	a := startTestHost(t, Config{SwarmKey: key, Allow: []peer.ID{bID}})
	b := startTestHost(t, Config{SwarmKey: key, DataDir: bDir})
	c := startTestHost(t, Config{SwarmKey: key})

	if err := b.Connect(t.Context(), infoOf(a)); err != nil {
		t.Fatalf("allowed peer refused: %v", err)
	}
	start := time.Now()
	err = c.Connect(t.Context(), infoOf(a))
	if err == nil {
		// The dialler may finish its side before the gater's refusal lands.
		waitUntil(t, 2*time.Second, "the refused connection is closed", func() bool { return !connected(c, a) })
	}
	t.Logf("peer outside the allowlist refused in %v (%v)", time.Since(start), err)
	if connected(a, c) {
		t.Fatal("a keeps a connection to a peer outside its allowlist")
	}
	if err := a.Connect(t.Context(), infoOf(c)); err == nil {
		t.Fatal("a dialled a peer outside its allowlist")
	}
	if !connected(a, b) {
		t.Fatal("the allowed peer lost its connection")
	}
}

func TestNewWithUnreachableBootstrap(t *testing.T) {
	plain, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Close() })
	var bootstrap []string
	for _, a := range plain.Addrs() {
		bootstrap = append(bootstrap, a.String()+"/p2p/"+plain.ID().String())
	}

	// A bootstrap peer without the key delays New by at most the dial timeout.
	start := time.Now()
	h := startTestHost(t, Config{SwarmKey: newTestKey(t), Bootstrap: bootstrap})
	if took := time.Since(start); took > testDialTimeout+time.Second {
		t.Errorf("New took %v, want at most the %v dial timeout", took, testDialTimeout)
	}
	if len(h.Libp2p().Network().Peers()) != 0 {
		t.Error("connected to a host without the key")
	}

	// Cancelling New's context stops it waiting.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	h2, err := New(ctx, Config{SwarmKey: newTestKey(t), DataDir: t.TempDir(), Bootstrap: bootstrap,
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, DialTimeout: time.Minute})
	took := time.Since(start)
	if err == nil {
		// The dial failed at once (the garbage read as a bad length) before the context ended.
		_ = h2.Close()
		t.Logf("New with an unreachable bootstrap returned in %v", took)
		return
	}
	if !errors.Is(err, context.DeadlineExceeded) || took > time.Second {
		t.Errorf("New after its context ended: %v after %v, want DeadlineExceeded promptly", err, took)
	}
}
