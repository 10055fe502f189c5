package node

import (
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/ekisa-team/syn4pse/node/config"
)

// grpcLimits are the gRPC server's options from the limit keys. They hold for local clients
// on TCP and for peers over libp2p alike: the same server serves both.
func grpcLimits(l config.Limits) []grpc.ServerOption {
	l = l.WithDefaults()
	size := int(min(l.GRPCMaxMessage, math.MaxInt32))
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
	}
}
