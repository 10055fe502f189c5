// Package httpapi serves SYN4PSE over HTTP: the OpenAI-compatible API (/v1/chat/completions,
// /v1/completions, /v1/models, with SSE streaming) and the node's health route. Every handler
// calls the same service implementation as gRPC; gRPC status codes become HTTP statuses here.
package httpapi

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/config"
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
}

// New returns the HTTP API over the node's services.
func New(inference *api.InferenceService, models *api.ModelService, node *api.NodeService) *Handler {
	h := &Handler{inference: inference, models: models, node: node, mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /v1/chat/completions", h.chatCompletions)
	h.mux.HandleFunc("POST /v1/completions", h.completions)
	h.mux.HandleFunc("POST /v1/audio/transcriptions", h.transcriptions)
	h.mux.HandleFunc("POST /v1/audio/speech", h.speech)
	h.mux.HandleFunc("POST /v1/embeddings", h.embeddings)
	h.mux.HandleFunc("POST /v1/rerank", h.rerank)
	h.mux.HandleFunc("GET /v1/models", h.listModels)
	h.mux.HandleFunc("GET /v1/models/{model...}", h.getModel)
	h.mux.HandleFunc("GET /healthz", h.health)
	h.mux.HandleFunc("GET /metrics", h.metrics)
	h.registerNative()
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "invalid_request_error", "not_found",
			fmt.Sprintf("no route %s %s; see /v1/chat/completions, /v1/completions, /v1/audio/transcriptions, /v1/audio/speech, /v1/models, /healthz", r.Method, r.URL.Path))
	})
	return h
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
		writeError(w, http.StatusNotFound, "invalid_request_error", "not_found", "this node serves no metrics")
		return
	}
	h.Metrics.ServeHTTP(w, r)
}

// routing reads the routing headers a client may send: Syn4pse-Node pins a node (peer ID or
// name), Syn4pse-Local-Only: true forbids forwarding.
func routing(r *http.Request) *pb.Routing {
	node := r.Header.Get("Syn4pse-Node")
	local := strings.EqualFold(r.Header.Get("Syn4pse-Local-Only"), "true")
	if node == "" && !local {
		return nil
	}
	return &pb.Routing{Node: node, LocalOnly: local}
}

// decodeJSON reads a JSON request body into v, answering 400 or 413 itself when it cannot.
func (h *Handler) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	limit := cmp.Or(h.MaxRequestBody, config.DefaultLimits.MaxRequestBody)
	err := DecodeJSON(w, r, limit, v)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "body_too_large", BodyTooLarge(r, limit))
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", "request body is empty: send a JSON object")
		default:
			writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", "request body is not valid JSON: "+err.Error())
		}
		return false
	}
	return true
}

// errorBody is OpenAI's error shape.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func newErrorBody(typ, code, msg string) errorBody {
	var c *string
	if code != "" {
		c = &code
	}
	return errorBody{Error: errorDetail{Message: msg, Type: typ, Code: c}}
}

func writeError(w http.ResponseWriter, httpStatus int, typ, code, msg string) {
	writeJSON(w, httpStatus, newErrorBody(typ, code, msg))
}

// statusError translates a service error (a gRPC status) to OpenAI's error shape and status.
func statusError(err error) (int, errorBody) {
	st := status.Convert(err)
	httpStatus, typ, code := http.StatusInternalServerError, "server_error", ""
	switch st.Code() {
	case codes.InvalidArgument:
		httpStatus, typ = http.StatusBadRequest, "invalid_request_error"
	case codes.OutOfRange:
		// A request over a limit (server.max_audio, server.max_messages, ...): its message names
		// the key.
		httpStatus, typ, code = http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large"
	case codes.NotFound:
		httpStatus, typ, code = http.StatusNotFound, "invalid_request_error", "model_not_found"
	case codes.FailedPrecondition:
		httpStatus, typ = http.StatusBadRequest, "invalid_request_error"
	case codes.Unavailable:
		httpStatus, typ, code = http.StatusServiceUnavailable, "server_error", "model_unavailable"
	case codes.ResourceExhausted:
		// A model's queue is full (models.max_queue): the node is overloaded, not the client
		// rate limited; OpenAI's SDKs retry a 503 after its Retry-After.
		httpStatus, typ, code = http.StatusServiceUnavailable, "server_error", "model_busy"
	case codes.Unimplemented:
		httpStatus, typ = http.StatusNotImplemented, "invalid_request_error"
	case codes.PermissionDenied:
		httpStatus, typ = http.StatusForbidden, "permission_error"
	case codes.Unauthenticated:
		httpStatus, typ = http.StatusUnauthorized, "authentication_error"
	case codes.DeadlineExceeded:
		httpStatus, typ = http.StatusGatewayTimeout, "timeout"
	case codes.Canceled:
		httpStatus, typ = 499, "cancelled"
	}
	return httpStatus, newErrorBody(typ, code, st.Message())
}

// retryAfter is the Retry-After, in seconds, of a request refused because its model's queue is
// full: a place frees when any running request ends, and the queue moves in seconds.
const retryAfter = "1"

func writeStatusError(w http.ResponseWriter, err error) {
	httpStatus, body := statusError(err)
	if status.Code(err) == codes.ResourceExhausted {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, httpStatus, body)
}

func writeJSON(w http.ResponseWriter, httpStatus int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("http write failed", "err", err)
	}
}

func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	res, err := h.node.Health(r.Context(), &pb.HealthRequest{})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
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
		writeStatusError(w, err)
		return
	}
	data := []modelObject{}
	for _, m := range res.GetModels() {
		if m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE {
			data = append(data, h.modelObject(m))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (h *Handler) getModel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	res, err := h.models.ListModels(r.Context(), &pb.ListModelsRequest{})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	for _, m := range res.GetModels() {
		if m.GetName() == name && m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE {
			writeJSON(w, http.StatusOK, h.modelObject(m))
			return
		}
	}
	writeError(w, http.StatusNotFound, "invalid_request_error", "model_not_found", fmt.Sprintf("model %q is not served by this node", name))
}

func (h *Handler) modelObject(m *pb.ModelInfo) modelObject {
	return modelObject{ID: m.GetName(), Object: "model", Created: h.node.Started.Unix(), OwnedBy: "syn4pse", Kind: api.ModalityName(m.GetModality()),
		Inputs: m.GetDetails().GetInputs()}
}

// HTTPStatus is the HTTP status of a service error (a gRPC status): the one mapping that every
// HTTP transport (this API, Ollama's) answers with.
func HTTPStatus(err error) int {
	httpStatus, _ := statusError(err)
	return httpStatus
}
