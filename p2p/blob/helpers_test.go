package blob

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/gologshim"
)

func TestMain(m *testing.M) {
	// Keep libp2p's logs (slog through gologshim) to errors, so test output stays readable.
	gologshim.SetDefaultHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	os.Exit(m.Run())
}

// newTestHost is a plain libp2p host on loopback, closed when the test ends.
func newTestHost(tb testing.TB, opts ...libp2p.Option) host.Host {
	tb.Helper()
	opts = append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}, opts...)
	h, err := libp2p.New(opts...)
	if err != nil {
		tb.Fatalf("libp2p host: %v", err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
