// Package nativeapi serves the node's native JSON routes under /api/, for what OpenAI's API has
// no place for: the node's status, its models and their lifecycle (load, unload, delete, pull
// with streamed progress), running models, peers and the mesh, the configuration in effect,
// the log tail, and the live event stream the dashboard draws from. Responses are the gRPC
// messages as JSON with snake_case names; every route calls the same services gRPC does.
package nativeapi

import (
	"encoding/json"
	"net/http"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	"github.com/ekisa-team/syn4pse/node/logtail"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Handler serves the native routes.
type Handler struct {
	models *api.ModelService
	node   *api.NodeService
	// MaxRequestBody bounds a JSON request body (server.max_request_body); 0 is the default.
	MaxRequestBody int64
	// Logs is the log tail GET /api/logs serves; nil answers 404.
	Logs *logtail.Ring
	// stop ends every event and log stream (Stop), which would otherwise hold a graceful
	// shutdown open until its timeout.
	stop     chan struct{}
	stopOnce sync.Once
}

// New is the native routes over the node's services.
func New(models *api.ModelService, node *api.NodeService) *Handler {
	return &Handler{models: models, node: node, stop: make(chan struct{})}
}

// Stop ends the open event and log streams and answers new ones at once; the node calls it
// when it shuts down (http.Server.RegisterOnShutdown).
func (h *Handler) Stop() {
	h.stopOnce.Do(func() { close(h.stop) })
}

// Register adds the routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/status", h.native(func(r *http.Request) (proto.Message, error) {
		return h.node.GetInfo(r.Context(), &pb.GetInfoRequest{})
	}))
	mux.HandleFunc("GET /api/models", h.native(func(r *http.Request) (proto.Message, error) {
		return h.models.ListModels(r.Context(), &pb.ListModelsRequest{})
	}))
	mux.HandleFunc("GET /api/ps", h.native(func(r *http.Request) (proto.Message, error) {
		return h.models.ListRunning(r.Context(), &pb.ListRunningRequest{})
	}))
	mux.HandleFunc("GET /api/peers", h.native(func(r *http.Request) (proto.Message, error) {
		return h.node.ListPeers(r.Context(), &pb.ListPeersRequest{})
	}))
	mux.HandleFunc("GET /api/mesh", h.native(func(r *http.Request) (proto.Message, error) {
		return h.node.MeshStatus(r.Context(), &pb.MeshStatusRequest{})
	}))
	mux.HandleFunc("POST /api/models/{name}/load", h.native(func(r *http.Request) (proto.Message, error) {
		var body struct {
			KeepAlive json.RawMessage `json:"keep_alive"`
		}
		json.NewDecoder(r.Body).Decode(&body) // an empty body keeps the default keep-alive
		return h.models.LoadModel(r.Context(), &pb.LoadModelRequest{Name: r.PathValue("name"), KeepAlive: wire.KeepAlive(body.KeepAlive)})
	}))
	mux.HandleFunc("POST /api/models/{name}/unload", h.native(func(r *http.Request) (proto.Message, error) {
		return h.models.UnloadModel(r.Context(), &pb.UnloadModelRequest{Name: r.PathValue("name")})
	}))
	mux.HandleFunc("DELETE /api/models/{name}", h.native(func(r *http.Request) (proto.Message, error) {
		return h.models.DeleteModel(r.Context(), &pb.DeleteModelRequest{Name: r.PathValue("name"), Force: r.URL.Query().Get("force") == "true"})
	}))
	mux.HandleFunc("POST /api/models/pull", h.pull)
	mux.HandleFunc("GET /api/events", h.events)
	mux.HandleFunc("GET /api/config", h.config)
	mux.HandleFunc("GET /api/logs", h.logs)
}

// native serves a service call's response as protobuf JSON (field names in snake_case).
func (h *Handler) native(call func(*http.Request) (proto.Message, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res, err := call(r)
		if err != nil {
			wire.WriteStatusError(w, err)
			return
		}
		b, err := marshalJSON(res)
		if err != nil {
			wire.WriteStatusError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}
}

func marshalJSON(m proto.Message) ([]byte, error) {
	return protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
}

// pull streams a pull's progress as newline-delimited JSON (as Ollama's /api/pull does); an
// error after the stream started arrives as a last line {"error": {...}}.
func (h *Handler) pull(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name   string `json:"name"`
		Source string `json:"source"`
		SHA256 string `json:"sha256"`
	}
	if !wire.Decode(w, r, h.MaxRequestBody, &body) {
		return
	}
	stream := &ndjsonStream{w: w}
	err := h.models.StreamPull(r.Context(), &pb.PullModelRequest{Name: body.Name, Source: body.Source, Sha256: body.SHA256}, func(p *pb.PullProgress) {
		stream.send(p)
	})
	if err != nil && !stream.started {
		wire.WriteStatusError(w, err)
		return
	}
	if err != nil {
		b, _ := json.Marshal(wire.StatusBody(err))
		stream.writeLine(b)
	}
}

type ndjsonStream struct {
	w       http.ResponseWriter
	started bool
}

func (s *ndjsonStream) send(p *pb.PullProgress) {
	b, err := marshalJSON(p)
	if err == nil {
		s.writeLine(b)
	}
}

func (s *ndjsonStream) writeLine(b []byte) {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/x-ndjson")
		s.w.WriteHeader(http.StatusOK)
	}
	s.w.Write(append(b, '\n'))
	http.NewResponseController(s.w).Flush()
}
