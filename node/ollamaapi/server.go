// Package ollamaapi serves SYN4PSE as Ollama's HTTP API (/api/chat, /api/generate, /api/embed,
// /api/tags, /api/show, /api/ps, /api/pull, /api/delete, /api/version), on its own port so that
// tools built for Ollama work unchanged. Requests and responses are Ollama's own types
// (github.com/ollama/ollama/api); every handler calls the node's services, so routing across the
// mesh is the same as for gRPC and the OpenAI API. Errors are Ollama's {"error": "..."}, with the
// HTTP status the OpenAI API derives from the same gRPC code.
package ollamaapi

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
)

// Handler serves Ollama's API.
type Handler struct {
	inference *api.InferenceService
	models    *api.ModelService
	node      *api.NodeService
	mux       *http.ServeMux
	// MaxRequestBody bounds a JSON request body (server.max_request_body); 0 is the default.
	MaxRequestBody int64
}

// New returns Ollama's API over the node's services.
func New(inference *api.InferenceService, models *api.ModelService, node *api.NodeService) *Handler {
	h := &Handler{inference: inference, models: models, node: node, mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /api/chat", h.chat)
	h.mux.HandleFunc("POST /api/generate", h.generate)
	h.mux.HandleFunc("POST /api/embed", h.embed)
	h.mux.HandleFunc("POST /api/embeddings", h.embeddings)
	h.mux.HandleFunc("GET /api/tags", h.tags)
	h.mux.HandleFunc("POST /api/show", h.show)
	h.mux.HandleFunc("GET /api/ps", h.ps)
	h.mux.HandleFunc("POST /api/pull", h.pull)
	h.mux.HandleFunc("DELETE /api/delete", h.delete)
	h.mux.HandleFunc("GET /api/version", h.version)
	h.mux.HandleFunc("GET /{$}", running)
	h.mux.HandleFunc("HEAD /{$}", running)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s %s in the Ollama API; the OpenAI API is on server.http_port", r.Method, r.URL.Path))
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// Route is the pattern of the route that serves r ("POST /api/chat"), "" when none does: a
// label for metrics and logs that, unlike the path, takes few values.
func (h *Handler) Route(r *http.Request) string {
	_, pattern := h.mux.Handler(r)
	return pattern
}

// running is Ollama's heartbeat: clients probe "/" before anything else.
func running(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method != http.MethodHead {
		io.WriteString(w, "Ollama is running")
	}
}

func (h *Handler) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": h.node.Version})
}

// decodeJSON reads a JSON request body into v, answering 400 or 413 itself when it cannot.
func (h *Handler) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	limit := cmp.Or(h.MaxRequestBody, config.DefaultLimits.MaxRequestBody)
	err := wire.DecodeJSON(w, r, limit, v)
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, wire.BodyTooLarge(r, limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "missing request body")
	default:
		writeError(w, http.StatusBadRequest, "request body is not valid JSON: "+err.Error())
	}
	return false
}

// invalid is a request the service never sees: the same status as its InvalidArgument.
func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// writeStatusError answers a service error as Ollama does, {"error": "..."}.
func writeStatusError(w http.ResponseWriter, err error) {
	if status.Code(err) == codes.ResourceExhausted {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, wire.HTTPStatus(err), status.Convert(err).Message())
}

func writeError(w http.ResponseWriter, httpStatus int, msg string) {
	writeJSON(w, httpStatus, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, httpStatus int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(httpStatus)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("ollama write failed", "err", err)
	}
}

// ndjson writes a stream of JSON lines (Ollama's streaming responses); an error after the first
// line is a last line {"error": "..."}, which Ollama's clients return as the call's error.
type ndjson struct {
	w       http.ResponseWriter
	started bool
}

func (s *ndjson) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/x-ndjson")
		s.w.WriteHeader(http.StatusOK)
	}
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return http.NewResponseController(s.w).Flush()
}

// finish ends the stream after err (nil when it completed).
func (s *ndjson) finish(err error) {
	switch {
	case err == nil:
	case !s.started:
		writeStatusError(s.w, err)
	default:
		s.send(map[string]string{"error": status.Convert(err).Message()})
	}
}
