package node

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/enginetest"
	"github.com/ekisa-team/syn4pse/node/models"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// TestCapabilityCarriesSlotsAndQueue: what peers route by (free slots, queue depth) follows the
// requests a model holds, from the moment they are admitted. The model runs on the fake engine
// (engine/enginetest): this is the catalog's bookkeeping, not llama.cpp's.
func TestCapabilityCarriesSlotsAndQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "echo.gguf")
	if err := os.WriteFile(path, []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	var registry engine.Registry
	registry.RegisterLLM(&enginetest.Engine{})
	catalog := models.New(&registry, []models.Decl{{Name: "echo", Modality: "llm", Engine: engine.DefaultEngine, Path: path,
		Enabled: true, Options: engine.LoadOptions{Parallel: 2}}}, models.Options{KeepAlive: time.Hour})
	t.Cleanup(func() { catalog.Close() })
	check := func(held, free, queued int) {
		t.Helper()
		mc := selfCapability(catalog, "n", &pb.Hardware{}).GetModels()[0]
		if !mc.GetLoaded() || int(mc.GetFreeSlots()) != free || int(mc.GetQueueDepth()) != queued {
			t.Fatalf("%d requests: capability %v, want %d free slots and %d queued", held, mc, free, queued)
		}
		if local := localModel(catalog)("echo"); local.FreeSlots != free {
			t.Fatalf("%d requests: the router sees %d free slots, want %d", held, local.FreeSlots, free)
		}
	}
	if err := catalog.Load(t.Context(), "echo", nil); err != nil {
		t.Fatal(err)
	}
	check(0, 2, 0)
	var leases []*models.Lease
	for held, want := range []struct{ free, queued int }{{1, 0}, {0, 0}, {0, 1}, {0, 2}} {
		lease, err := catalog.Acquire(t.Context(), "echo", nil)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, lease)
		check(held+1, want.free, want.queued)
	}
	for _, l := range leases {
		l.Release()
	}
	check(0, 2, 0)
}
