// Package httpapi serves SYN4PSE over HTTP: the OpenAI-compatible API (/v1/chat/completions,
// /v1/completions, /v1/models, with SSE streaming) and the node's health route. Every handler
// calls the same service implementation as gRPC; gRPC status codes become HTTP statuses in
// package wire. The audio routes are package audioapi's, the native routes under /api/ package
// nativeapi's.
package httpapi

import (
	"fmt"
	"net/http"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/httpapi/audioapi"
	"github.com/ekisa-team/syn4pse/node/httpapi/dashboard"
	"github.com/ekisa-team/syn4pse/node/httpapi/nativeapi"
	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Handler serves the HTTP API.
type Handler struct {
	inference *api.InferenceService
	models    *api.ModelService
	node      *api.NodeService
	mux       *http.ServeMux
	// FetchImageURLs lets chat image parts name http(s) URLs, fetched by the node
	// (server.fetch_image_urls); off, only data: URLs are taken.
	FetchImageURLs bool
	// MaxRequestBody bounds a JSON request body (server.max_request_body); 0 is the default.
	MaxRequestBody int64
	// Metrics serves GET /metrics (the node's Prometheus registry); nil answers 404.
	Metrics http.Handler
	// Native is the routes under /api/ (package nativeapi); the node sets its Logs.
	Native *nativeapi.Handler
}

// StopEvents ends the open event and log streams of /api/ and answers new ones at once; the
// node calls it when it shuts down (http.Server.RegisterOnShutdown).
func (h *Handler) StopEvents() { h.Native.Stop() }

// New returns the HTTP API over the node's services.
func New(inference *api.InferenceService, models *api.ModelService, node *api.NodeService) *Handler {
	h := &Handler{inference: inference, models: models, node: node, mux: http.NewServeMux(), Native: nativeapi.New(models, node)}
	h.mux.HandleFunc("POST /v1/chat/completions", h.chatCompletions)
	h.mux.HandleFunc("POST /v1/completions", h.completions)
	h.mux.HandleFunc("POST /v1/audio/transcriptions", func(w http.ResponseWriter, r *http.Request) { h.audio().Transcriptions(w, r) })
	h.mux.HandleFunc("POST /v1/audio/speech", func(w http.ResponseWriter, r *http.Request) { h.audio().Speech(w, r) })
	h.mux.HandleFunc("POST /v1/embeddings", h.embeddings)
	h.mux.HandleFunc("POST /v1/rerank", h.rerank)
	h.mux.HandleFunc("GET /v1/models", h.listModels)
	h.mux.HandleFunc("GET /v1/models/{model...}", h.getModel)
	h.mux.HandleFunc("GET /healthz", h.health)
	h.mux.HandleFunc("GET /metrics", h.metrics)
	h.Native.Register(h.mux)
	// The dashboard: the page at / and its files; every other unknown path still answers JSON 404.
	page := dashboard.Handler()
	h.mux.Handle("GET /{$}", page)
	h.mux.Handle("GET /index.html", page)
	h.mux.Handle("GET /assets/", page)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, http.StatusNotFound, "invalid_request_error", "not_found",
			fmt.Sprintf("no route %s %s; see /v1/chat/completions, /v1/completions, /v1/audio/transcriptions, /v1/audio/speech, /v1/models, /healthz", r.Method, r.URL.Path))
	})
	return h
}

// audio is the audio routes over the node's speech service, made per request: the node sets the
// router and MaxRequestBody after New.
func (h *Handler) audio() *audioapi.Handler {
	return &audioapi.Handler{Service: h.inference.Speech(), MaxRequestBody: h.MaxRequestBody}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// Route is the pattern of the route that serves r ("POST /v1/chat/completions"), "" when none
// does: a label for metrics and logs that, unlike the path, takes few values.
func (h *Handler) Route(r *http.Request) string {
	_, pattern := h.mux.Handler(r)
	return pattern
}

func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.Metrics == nil {
		wire.WriteError(w, http.StatusNotFound, "invalid_request_error", "not_found", "this node serves no metrics")
		return
	}
	h.Metrics.ServeHTTP(w, r)
}

// decodeJSON reads a JSON request body into v, answering 400 or 413 itself when it cannot.
func (h *Handler) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return wire.Decode(w, r, h.MaxRequestBody, v)
}

func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	res, err := h.node.Health(r.Context(), &pb.HealthRequest{})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, map[string]any{
		"status":             "ok",
		"models_ready":       res.GetModelsReady(),
		"models_unavailable": res.GetModelsUnavailable(),
	})
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Kind is what the model does (llm, embeddings, stt, tts): OpenAI's list has no such field,
	// and a client choosing a model for /v1/audio/speech needs it.
	Kind string `json:"kind,omitempty"`
	// Inputs are what a loaded LLM's messages may carry (text, image, audio).
	Inputs []string `json:"inputs,omitempty"`
}

// listModels lists the models that can serve (loaded, loading or on disk); unavailable ones
// are left out, as a client could not use them (the native model list shows them with reasons).
func (h *Handler) listModels(w http.ResponseWriter, r *http.Request) {
	res, err := h.models.ListModels(r.Context(), &pb.ListModelsRequest{})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	data := []modelObject{}
	for _, m := range res.GetModels() {
		if m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE {
			data = append(data, h.modelObject(m))
		}
	}
	wire.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (h *Handler) getModel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	res, err := h.models.ListModels(r.Context(), &pb.ListModelsRequest{})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	for _, m := range res.GetModels() {
		if m.GetName() == name && m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE {
			wire.WriteJSON(w, http.StatusOK, h.modelObject(m))
			return
		}
	}
	wire.WriteError(w, http.StatusNotFound, "invalid_request_error", "model_not_found", fmt.Sprintf("model %q is not served by this node", name))
}

func (h *Handler) modelObject(m *pb.ModelInfo) modelObject {
	return modelObject{ID: m.GetName(), Object: "model", Created: h.node.Started.Unix(), OwnedBy: "syn4pse", Kind: api.ModalityName(m.GetModality()),
		Inputs: m.GetDetails().GetInputs()}
}
