package nativeapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// eventsCheck is how often GET /api/events looks at the peers and models for a change;
// eventsKeepAlive how long it stays silent at most, so that proxies keep the stream open.
const (
	eventsCheck     = time.Second
	eventsKeepAlive = 15 * time.Second
)

// events streams the mesh as server-sent events for the dashboard: a "peers" event carries
// /api/peers' JSON and a "models" event /api/models', each sent at the start and again whenever
// it changes (peers join or leave, load, queues and speeds move, a model loads or unloads).
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	var lastPeers, lastModels []byte
	quiet := time.Now()
	tick := time.NewTicker(eventsCheck)
	defer tick.Stop()
	for {
		peers, err := h.node.ListPeers(r.Context(), &pb.ListPeersRequest{})
		if err != nil {
			b, _ := json.Marshal(wire.StatusBody(err))
			writeEvent(w, "error", b)
			return
		}
		models, err := h.models.ListModels(r.Context(), &pb.ListModelsRequest{})
		if err != nil {
			b, _ := json.Marshal(wire.StatusBody(err))
			writeEvent(w, "error", b)
			return
		}
		sent := false
		if b, err := marshalJSON(peers); err == nil && !bytes.Equal(b, lastPeers) {
			lastPeers, sent = b, true
			writeEvent(w, "peers", b)
		}
		if b, err := marshalJSON(models); err == nil && !bytes.Equal(b, lastModels) {
			lastModels, sent = b, true
			writeEvent(w, "models", b)
		}
		if !sent && time.Since(quiet) >= eventsKeepAlive {
			fmt.Fprint(w, ": keep-alive\n\n")
			sent = true
		}
		if sent {
			quiet = time.Now()
			if err := rc.Flush(); err != nil {
				return // the client went away
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-h.stop:
			return
		case <-tick.C:
		}
	}
}

// writeEvent writes one server-sent event; data is one line of JSON.
func writeEvent(w http.ResponseWriter, name string, data []byte) {
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
}
