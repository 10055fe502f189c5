// Package modelstest helps tests that drive a models.Manager.
package modelstest

import (
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/node/models"
)

// WaitEngine polls until the engine of model runs and queues the given numbers of requests: a
// liveness bound for requests to reach the engine, not a timing check.
func WaitEngine(t testing.TB, catalog *models.Manager, model string, active, queued int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, _ := catalog.Status(model)
		if s.Stats.Active == active && s.Stats.Queued == queued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine stats of %q: %+v, want %d active and %d queued", model, s.Stats, active, queued)
		}
		time.Sleep(time.Millisecond)
	}
}
