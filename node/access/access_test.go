package access

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestKeysValid(t *testing.T) {
	keys := NewKeys([]string{"first-key", "", "second-key"})
	for _, tt := range []struct {
		key  string
		want bool
	}{
		{"first-key", true}, {"second-key", true}, {"", false}, {"first-ke", false}, {"first-key2", false},
		{"FIRST-KEY", false}, {"x", false},
	} {
		if got := keys.Valid(tt.key); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
	if !keys.Required() {
		t.Error("Required() = false with keys")
	}
	if none := NewKeys([]string{""}); none.Required() || !none.Valid("") {
		t.Error("a set of no keys must require nothing")
	}
}

func TestBearer(t *testing.T) {
	for _, tt := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true}, {"bearer abc", "abc", true}, {"  Bearer   abc  ", "abc", true},
		{"Basic abc", "", false}, {"Bearer", "", false}, {"Bearer ", "", false}, {"abc", "", false}, {"", "", false},
	} {
		token, ok := bearer(tt.header)
		if token != tt.token || ok != tt.ok {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

func TestHTTPMiddleware(t *testing.T) {
	reached := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ })
	for _, shape := range []ErrorShape{OpenAIErrors, OllamaErrors} {
		h := HTTP(NewKeys([]string{"k1", "k2"}), shape, next)
		for _, tt := range []struct {
			method, path, auth string
			want               int
		}{
			{"GET", "/v1/models", "", http.StatusUnauthorized},
			{"GET", "/v1/models", "Bearer nope", http.StatusUnauthorized},
			{"GET", "/v1/models", "Basic k1", http.StatusUnauthorized},
			{"POST", "/healthz", "", http.StatusUnauthorized},
			{"GET", "/healthz/x", "", http.StatusUnauthorized},
			{"GET", "/v1/models", "Bearer k1", http.StatusOK},
			{"GET", "/v1/models", "Bearer k2", http.StatusOK},
			{"GET", "/healthz", "", http.StatusOK},
			{"HEAD", "/healthz", "", http.StatusOK},
		} {
			before := reached
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s %q: %d, want %d", tt.method, tt.path, tt.auth, rec.Code, tt.want)
			}
			if passed := reached > before; passed != (tt.want == http.StatusOK) {
				t.Fatalf("%s %s %q: handler reached = %v", tt.method, tt.path, tt.auth, passed)
			}
			if tt.want != http.StatusUnauthorized {
				continue
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="syn4pse"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			var body struct {
				Error json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			var msg string
			if shape == OpenAIErrors {
				var detail struct{ Message, Type, Code string }
				if err := json.Unmarshal(body.Error, &detail); err != nil || detail.Code != "invalid_api_key" || detail.Type != "invalid_request_error" {
					t.Fatalf("OpenAI error %s: %v", body.Error, err)
				}
				msg = detail.Message
			} else if err := json.Unmarshal(body.Error, &msg); err != nil {
				t.Fatalf("Ollama error %s: %v", body.Error, err)
			}
			if msg == "" {
				t.Fatal("refusal without a message")
			}
		}
	}
	if h := HTTP(NewKeys(nil), OpenAIErrors, next); h == nil {
		t.Fatal("nil handler")
	} else {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/models", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("no keys: %d", rec.Code)
		}
	}
}

func TestUnaryInterceptor(t *testing.T) {
	intercept := UnaryInterceptor(NewKeys([]string{"k1"}))
	handler := func(context.Context, any) (any, error) { return "ok", nil }
	call := func(method string, md metadata.MD) codes.Code {
		ctx := metadata.NewIncomingContext(context.Background(), md)
		_, err := intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, handler)
		return status.Code(err)
	}
	const method = "/syn4pse.v1.NodeService/GetInfo"
	for _, tt := range []struct {
		method string
		md     metadata.MD
		want   codes.Code
	}{
		{method, nil, codes.Unauthenticated},
		{method, metadata.Pairs("authorization", "Bearer wrong"), codes.Unauthenticated},
		{method, metadata.Pairs("authorization", "k1"), codes.Unauthenticated},
		{method, metadata.Pairs("authorization", "Bearer k1"), codes.OK},
		{"/grpc.health.v1.Health/Check", nil, codes.OK},
		{"/grpc.health.v1.HealthX/Check", nil, codes.Unauthenticated},
	} {
		if got := call(tt.method, tt.md); got != tt.want {
			t.Errorf("%s %v: %v, want %v", tt.method, tt.md, got, tt.want)
		}
	}
}
