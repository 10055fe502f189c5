package blob

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/gologshim"
)

func TestMain(m *testing.M) {
	// Keep libp2p's logs (slog through gologshim) to errors, so test output stays readable.
	gologshim.SetDefaultHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	os.Exit(m.Run())
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
