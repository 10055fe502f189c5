package access

import (
	"encoding/json"
	"log/slog"
	"net/http"
)

// HealthPath is the one HTTP route open without a key.
const HealthPath = "/healthz"

// ErrorShape is how a refusal's JSON body looks, so each port's clients can read it.
type ErrorShape int

const (
	// OpenAIErrors answers {"error": {"message", "type", "param", "code"}}, as OpenAI's API does.
	OpenAIErrors ErrorShape = iota
	// OllamaErrors answers {"error": "message"}, as Ollama's API does.
	OllamaErrors
)

// HTTP returns next guarded by keys: without a valid "Authorization: Bearer KEY" a request gets
// 401 with WWW-Authenticate: Bearer and a JSON error in shape, and never reaches next. /healthz
// stays open. Where keys requires nothing, HTTP returns next itself.
func HTTP(keys *Keys, shape ErrorShape, next http.Handler) http.Handler {
	if !keys.Required() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == HealthPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		header := r.Header.Get("Authorization")
		if token, ok := bearer(header); ok && keys.Valid(token) {
			next.ServeHTTP(w, r)
			return
		}
		msg := refusal(header)
		slog.Warn("request refused", "reason", msg, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		writeRefusal(w, shape, msg)
	})
}

// writeRefusal answers 401 in the port's error shape.
func writeRefusal(w http.ResponseWriter, shape ErrorShape, msg string) {
	var body any = map[string]string{"error": msg}
	if shape == OpenAIErrors {
		body = map[string]any{"error": map[string]any{
			"message": msg, "type": "invalid_request_error", "param": nil, "code": "invalid_api_key",
		}}
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="syn4pse"`)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	if err := json.NewEncoder(w).Encode(body); err != nil {
		slog.Debug("http write failed", "err", err)
	}
}
