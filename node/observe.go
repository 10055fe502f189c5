package node

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/requestid"
	"github.com/ekisa-team/syn4pse/p2p/rpc"
)

// Every API request, HTTP or gRPC, passes through here on its way in: it gets its request ID
// (the client's, when sane, else a new one), which goes back in the response and into the
// context, where the log lines about the request and the calls that forward it find it; it is
// counted and timed for the metrics; and it is logged when it ends.

// unmatchedRoute labels requests no route pattern matched.
const unmatchedRoute = "unmatched"

// quietRoutes are polled by machines (health checks, scrapers): their requests log at debug.
var quietRoutes = map[string]bool{"GET /healthz": true, "GET /metrics": true}

// observeHTTP wraps an HTTP API. route names the pattern that serves a request: the metrics'
// route label, so that their series stay few whatever paths clients send.
func (m *metrics) observeHTTP(next http.Handler, route func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestid.Accept(r.Header.Get(requestid.Header))
		w.Header().Set(requestid.Header, id)
		ctx := requestid.NewContext(r.Context(), id)
		pattern := route(r)
		if pattern == "" {
			pattern = unmatchedRoute
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(ctx))
		code := rec.code()
		took := time.Since(start)
		m.httpDone(pattern, code, took)
		level := slog.LevelInfo
		if quietRoutes[pattern] {
			level = slog.LevelDebug
		}
		slog.Log(ctx, level, "http request", "method", r.Method, "path", r.URL.Path, "route", pattern, "status", code,
			"took", took, "remote", r.RemoteAddr)
	})
}

// statusRecorder remembers the status a handler answers with. It passes flushes on (SSE
// streams need them, and their errors: a client gone) and unwraps for http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first final status.
func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write answers 200 when no status was written, as net/http does.
func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// FlushError flushes the response, as http.ResponseController.Flush calls it.
func (w *statusRecorder) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher for handlers that assert it.
func (w *statusRecorder) Flush() { w.FlushError() }

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status the client got: 200 when the handler wrote nothing.
func (w *statusRecorder) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// unaryInterceptor observes a unary gRPC call.
func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx = grpcRequestID(ctx, func(md metadata.MD) error { return grpc.SetHeader(ctx, md) })
	res, err := handler(ctx, req)
	m.grpcDone(ctx, info.FullMethod, start, err)
	return res, err
}

// streamInterceptor observes a streaming gRPC call.
func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx := grpcRequestID(ss.Context(), ss.SetHeader)
	err := handler(srv, contextStream{ss, ctx})
	m.grpcDone(ctx, info.FullMethod, start, err)
	return err
}

// grpcRequestID adopts the caller's x-request-id metadata when sane (a peer forwarding a
// request sends its ID) or makes one, sends it back in the response header and returns ctx
// carrying it.
func grpcRequestID(ctx context.Context, setHeader func(metadata.MD) error) context.Context {
	id := requestid.Accept(requestid.FromIncoming(ctx))
	if err := setHeader(metadata.Pairs(requestid.MetadataKey, id)); err != nil {
		slog.DebugContext(ctx, "grpc: send the request ID header", "err", err)
	}
	return requestid.NewContext(ctx, id)
}

// contextStream is a server stream whose handler sees ctx.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context with its request ID.
func (s contextStream) Context() context.Context { return s.ctx }

// grpcDone counts and logs a gRPC call that ended with err.
func (m *metrics) grpcDone(ctx context.Context, method string, start time.Time, err error) {
	st := status.Convert(err)
	code := st.Code().String()
	m.grpcRequests.WithLabelValues(method, code).Inc()
	attrs := []any{"method", method, "code", code, "took", time.Since(start)}
	if p, ok := rpc.PeerFromContext(ctx); ok {
		m.peerRequests.WithLabelValues(method, code).Inc()
		attrs = append(attrs, "peer", p.String())
	}
	if err != nil {
		attrs = append(attrs, "err", st.Message())
	}
	level := slog.LevelInfo
	if strings.HasPrefix(method, "/grpc.") { // health checks and reflection
		level = slog.LevelDebug
	}
	slog.Log(ctx, level, "grpc request", attrs...)
}

// requestIDConn is a peer connection whose calls carry the request ID of their context to the
// peer, whose interceptor adopts it: one ID names a request on every node it passes.
type requestIDConn struct{ grpc.ClientConnInterface }

// Invoke makes a unary call with the request ID in its metadata.
func (c requestIDConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.ClientConnInterface.Invoke(requestid.Outgoing(ctx), method, args, reply, opts...)
}

// NewStream starts a streaming call with the request ID in its metadata.
func (c requestIDConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.ClientConnInterface.NewStream(requestid.Outgoing(ctx), desc, method, opts...)
}
