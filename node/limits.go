package node

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"

	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/router"
)

// grpcLimits are the gRPC server's options from the limit keys. They hold for local clients
// on TCP and for peers over libp2p alike: the same server serves both.
func grpcLimits(l config.Limits) []grpc.ServerOption {
	l = l.WithDefaults()
	size := grpcMessageSize(l)
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(size),
		grpc.MaxSendMsgSize(size),
		grpc.MaxConcurrentStreams(uint32(min(l.GRPCMaxStreams, math.MaxInt32))),
		// A client pinging more often than GRPCKeepaliveMin, with or without calls running, is
		// sent GOAWAY (ENHANCE_YOUR_CALM) after a few pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.GRPCKeepaliveMin, PermitWithoutStream: true}),
		// The node pings a connection idle for 2 minutes and drops it if no answer comes within
		// 20 seconds: a client gone without closing (a laptop asleep) frees its connection.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.StatsHandler(messageSizeLog{limit: config.FormatSize(l.GRPCMaxMessage)}),
	}
}

// grpcMessageSize is server.grpc_max_message as gRPC takes it.
func grpcMessageSize(l config.Limits) int {
	return int(min(l.WithDefaults().GRPCMaxMessage, math.MaxInt32))
}

// messageSizeLog logs calls that gRPC itself refused for a message over
// server.grpc_max_message: they end before any handler of ours runs.
type messageSizeLog struct{ limit string }

type methodKey struct{}

// TagRPC implements stats.Handler.
func (messageSizeLog) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

// HandleRPC implements stats.Handler.
func (h messageSizeLog) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok || !router.OverSizeLimit(end.Error) {
		return
	}
	method, _ := ctx.Value(methodKey{}).(string)
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	// gRPC's own words tell which message it was: "trying to send" for the reply.
	what := "request refused: over a limit"
	if strings.Contains(end.Error.Error(), "trying to send") {
		what = "reply not sent: over a limit (the client asked for more than one message may hold)"
	}
	slog.Warn(what, "route", method, "limit_key", "server.grpc_max_message", "limit", h.limit, "remote", remote)
}

// TagConn implements stats.Handler.
func (messageSizeLog) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn implements stats.Handler.
func (messageSizeLog) HandleConn(context.Context, stats.ConnStats) {}
