package nativeapi

import (
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	"github.com/ekisa-team/syn4pse/node/logtail"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// config serves GET /api/config: the node's configuration in effect, secrets hidden, as the
// JSON object NodeService.GetConfig carries.
func (h *Handler) config(w http.ResponseWriter, r *http.Request) {
	res, err := h.node.GetConfig(r.Context(), &pb.GetConfigRequest{})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, res.GetConfigJson())
}

// logs serves GET /api/logs: the node's recent log records, oldest first, as
// {"lines": [...]}; with ?follow=1, a server-sent event stream instead: a "log" event for each
// record kept, then one for each new record, until the client goes or the node stops.
func (h *Handler) logs(w http.ResponseWriter, r *http.Request) {
	if h.Logs == nil {
		wire.WriteError(w, http.StatusNotFound, "invalid_request_error", "not_found", "this node keeps no log tail")
		return
	}
	if f := r.URL.Query().Get("follow"); f != "1" && f != "true" {
		wire.WriteJSON(w, http.StatusOK, map[string]any{"lines": h.Logs.Lines()})
		return
	}
	kept, lines, stop := h.Logs.Follow(256)
	defer stop()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(l logtail.Line) {
		b, _ := json.Marshal(l)
		writeEvent(w, "log", b)
	}
	for _, l := range kept {
		send(l)
	}
	keepAlive := time.NewTicker(eventsKeepAlive)
	defer keepAlive.Stop()
	for {
		if err := rc.Flush(); err != nil {
			return // the client went away
		}
		select {
		case <-r.Context().Done():
			return
		case <-h.stop:
			return
		case l := <-lines:
			send(l)
			// Send what else is waiting before flushing: a burst of records is one write.
			for more := true; more; {
				select {
				case l := <-lines:
					send(l)
				default:
					more = false
				}
			}
		case <-keepAlive.C:
			w.Write([]byte(": keep-alive\n\n"))
		}
	}
}
