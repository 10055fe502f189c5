package access

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/p2p/rpc"
)

// healthPrefix starts the full method names of gRPC's standard health service, which stays
// open like HTTP /healthz.
var healthPrefix = "/" + healthpb.Health_ServiceDesc.ServiceName + "/"

// UnaryInterceptor refuses unary calls without a valid key (UNAUTHENTICATED), except calls from
// mesh peers and health checks. Where keys requires nothing it lets every call through.
func UnaryInterceptor(keys *Keys) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := keys.authorize(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streaming calls.
func StreamInterceptor(keys *Keys) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := keys.authorize(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// authorize checks one call's metadata "authorization: Bearer KEY".
func (k *Keys) authorize(ctx context.Context, method string) error {
	if !k.Required() || strings.HasPrefix(method, healthPrefix) {
		return nil
	}
	if _, fromPeer := rpc.PeerFromContext(ctx); fromPeer {
		return nil
	}
	var header string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			header = v[0]
		}
	}
	if token, ok := bearer(header); ok && k.Valid(token) {
		return nil
	}
	msg := refusal(header)
	remote := ""
	if p, ok := grpcpeer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	slog.Warn("request refused", "reason", msg, "remote", remote, "method", method)
	return status.Error(codes.Unauthenticated, msg)
}
