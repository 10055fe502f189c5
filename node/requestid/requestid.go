// Package requestid names every API request with an ID that follows it through the node's log
// lines and across forwarding hops. A client may choose the ID (the X-Request-Id header over
// HTTP, x-request-id metadata over gRPC); the node makes one when it sends none or one that is
// not sane (too long, or not made of token characters). The ID lives in the request's context;
// LogHandler adds it to every log line logged with that context, and Outgoing puts it in the
// metadata of a call the node forwards, where the peer adopts it.
package requestid

import (
	"context"
	"crypto/rand"
	"log/slog"

	"google.golang.org/grpc/metadata"
)

const (
	// Header is the HTTP header that carries a request ID, in requests and responses.
	Header = "X-Request-Id"
	// MetadataKey is the gRPC metadata key that carries a request ID (on local calls, forwarded
	// calls and in response headers).
	MetadataKey = "x-request-id"
	// LogKey is the attribute that names the request ID in log lines.
	LogKey = "request_id"
	// MaxLen bounds a client's request ID: longer ones are replaced, so a client cannot fill the
	// logs through it.
	MaxLen = 128
)

// New returns a fresh random request ID (26 base32 characters, 128 bits).
func New() string { return rand.Text() }

// Valid says whether a client's id may be used as is: 1 to MaxLen characters, each an HTTP
// token character (RFC 9110: letters, digits and !#$%&'*+-.^_`|~), so it cannot break a log
// line or a header.
func Valid(id string) bool {
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isTokenChar(id[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// Accept returns id when it is Valid, else a new one.
func Accept(id string) string {
	if Valid(id) {
		return id
	}
	return New()
}

type contextKey struct{}

// NewContext returns ctx carrying the request ID id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the request ID in ctx, "" when there is none.
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(contextKey{}).(string)
	return id
}

// FromIncoming returns the request ID a gRPC caller sent in its metadata, "" when it sent none.
// It is not validated: pass it through Accept.
func FromIncoming(ctx context.Context) string {
	if vals := metadata.ValueFromIncomingContext(ctx, MetadataKey); len(vals) > 0 {
		return vals[0]
	}
	return ""
}

// Outgoing returns ctx with its request ID, if it has one, in the metadata of the gRPC calls
// made with it: how a forwarded request keeps its ID on the next node.
func Outgoing(ctx context.Context) context.Context {
	id := FromContext(ctx)
	if id == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, MetadataKey, id)
}

// LogHandler wraps h so that every record logged with a context carrying a request ID has a
// request_id attribute: the slog.InfoContext(ctx, ...) lines of a request name it.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

// Handle adds the context's request ID to r and passes it on.
func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := FromContext(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String(LogKey, id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the wrapper around the handler with attrs.
func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup keeps the wrapper around the handler with the group.
func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{h.Handler.WithGroup(name)}
}
