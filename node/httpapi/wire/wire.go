// Package wire is the HTTP API's wire format, shared by its OpenAI-compatible routes and Ollama's
// API: reading requests (JSON bodies under server.max_request_body, the routing headers) and
// writing answers (JSON, OpenAI's error shape with the HTTP status derived from the service's
// gRPC code, server-sent events).
package wire

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

	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Routing reads the routing headers a client may send: Syn4pse-Node pins a node (peer ID or
// name), Syn4pse-Local-Only: true forbids forwarding.
func Routing(r *http.Request) *pb.Routing {
	node := r.Header.Get("Syn4pse-Node")
	local := strings.EqualFold(r.Header.Get("Syn4pse-Local-Only"), "true")
	if node == "" && !local {
		return nil
	}
	return &pb.Routing{Node: node, LocalOnly: local}
}

// Decode reads a JSON request body of at most maxBody bytes (server.max_request_body; 0 is the
// default) into v, answering 400 or 413 itself when it cannot.
func Decode(w http.ResponseWriter, r *http.Request, maxBody int64, v any) bool {
	limit := cmp.Or(maxBody, config.DefaultLimits.MaxRequestBody)
	err := DecodeJSON(w, r, limit, v)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			WriteError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "body_too_large", BodyTooLarge(r, limit))
		case errors.Is(err, io.EOF):
			WriteError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", "request body is empty: send a JSON object")
		default:
			WriteError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", "request body is not valid JSON: "+err.Error())
		}
		return false
	}
	return true
}

// DecodeJSON reads a JSON request body of at most limit bytes into v, and reads the body to its
// end: only then does net/http notice a client that goes away during the response. A body over
// the limit is an *http.MaxBytesError.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, body)
	return err
}

// BodyTooLarge logs a request body refused for being over limit bytes (server.max_request_body)
// and returns the message that tells the client.
func BodyTooLarge(r *http.Request, limit int64) string {
	slog.Warn("request refused: over a limit", "route", r.Method+" "+r.URL.Path, "limit_key", "server.max_request_body",
		"limit", config.FormatSize(limit), "remote", r.RemoteAddr)
	return fmt.Sprintf("the request body is larger than %s: send less, or raise server.max_request_body (env SYN4PSE_SERVER_MAX_REQUEST_BODY) on the node",
		config.FormatSize(limit))
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

// WriteError answers with OpenAI's error body.
func WriteError(w http.ResponseWriter, httpStatus int, typ, code, msg string) {
	WriteJSON(w, httpStatus, newErrorBody(typ, code, msg))
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

// StatusBody is OpenAI's error body of a service error (a gRPC status), for an error that
// arrives after a stream started.
func StatusBody(err error) any {
	_, body := statusError(err)
	return body
}

// retryAfter is the Retry-After, in seconds, of a request refused because its model's queue is
// full: a place frees when any running request ends, and the queue moves in seconds.
const retryAfter = "1"

// WriteStatusError answers a service error (a gRPC status) with its HTTP status and OpenAI's
// error body.
func WriteStatusError(w http.ResponseWriter, err error) {
	httpStatus, body := statusError(err)
	if status.Code(err) == codes.ResourceExhausted {
		w.Header().Set("Retry-After", retryAfter)
	}
	WriteJSON(w, httpStatus, body)
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, httpStatus int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("http write failed", "err", err)
	}
}

// HTTPStatus is the HTTP status of a service error (a gRPC status): the one mapping that every
// HTTP transport (this API, Ollama's) answers with.
func HTTPStatus(err error) int {
	httpStatus, _ := statusError(err)
	return httpStatus
}

// KeepAlive reads Ollama's keep_alive extra: a duration string ("10m") or a number of seconds
// (-1 keeps the model loaded); the service checks it.
func KeepAlive(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}
