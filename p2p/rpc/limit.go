package rpc

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

const (
	// busyRetryDelay is the retry hint of a call refused because its peer has too many calls
	// running: a generation takes seconds, so a second is a fair first wait.
	busyRetryDelay = time.Second
	// limitLogGap spaces the log lines about one peer's refused calls: a peer that floods gets
	// one line per gap, with the count of calls refused since the last.
	limitLogGap = 10 * time.Second
	// limitSweepGap is how often idle peers' records are dropped.
	limitSweepGap = time.Minute
)

// PeerLimits bounds what one peer may ask of the gRPC services that Serve exposes: how many of
// its calls may run at once and how many it may start per second (a token bucket whose burst
// is the rate), so that one peer cannot take every slot of this node. Calls that did not come
// through Serve (local clients on TCP) are not limited. A refused call ends at once with
// RESOURCE_EXHAUSTED carrying a RetryInfo detail; the forwarding node's router then tries
// another node.
//
// Install it on the gRPC server with ServerOptions. It is safe for concurrent use.
type PeerLimits struct {
	maxActive int
	perSecond rate.Limit
	burst     int
	log       *slog.Logger
	now       func() time.Time // tests freeze the clock the buckets fill by

	mu    sync.Mutex
	peers map[peer.ID]*peerUsage
	swept time.Time
}

// peerUsage is one peer's running calls, token bucket and log state.
type peerUsage struct {
	active   int
	bucket   *rate.Limiter
	lastUse  time.Time
	refused  int // calls refused since the last log line
	loggedAt time.Time
}

// NewPeerLimits limits each peer to maxActive calls at once and perSecond calls started per
// second; 0 (or less) turns either limit off.
func NewPeerLimits(maxActive int, perSecond float64) *PeerLimits {
	l := &PeerLimits{maxActive: max(maxActive, 0), perSecond: rate.Inf, log: slog.Default().With("component", "rpc"),
		now: time.Now, peers: make(map[peer.ID]*peerUsage)}
	if perSecond > 0 {
		l.perSecond = rate.Limit(perSecond)
		l.burst = max(1, int(math.Ceil(perSecond)))
	}
	return l
}

// ServerOptions returns the interceptors that apply the limits, chained after any the server
// already has.
func (l *PeerLimits) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			release, err := l.admit(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			defer release()
			return next(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
			release, err := l.admit(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			defer release()
			return next(srv, ss)
		}),
	}
}

// admit counts a call in, or refuses it; release counts it out when the call ends.
func (l *PeerLimits) admit(ctx context.Context, method string) (release func(), err error) {
	id, remote := PeerFromContext(ctx)
	if !remote || (l.maxActive == 0 && l.perSecond == rate.Inf) {
		return func() {}, nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	u := l.peers[id]
	if u == nil {
		u = &peerUsage{bucket: rate.NewLimiter(l.perSecond, l.burst)}
		l.peers[id] = u
	}
	u.lastUse = now
	if l.maxActive > 0 && u.active >= l.maxActive {
		return nil, l.refuseLocked(id, u, method, now, busyRetryDelay,
			fmt.Sprintf("%d calls running, the most p2p.peer_max_requests allows one peer", u.active))
	}
	if r := u.bucket.ReserveN(now, 1); r.DelayFrom(now) > 0 {
		wait := r.DelayFrom(now)
		r.CancelAt(now)
		return nil, l.refuseLocked(id, u, method, now, wait,
			fmt.Sprintf("more than %g calls a second, the most p2p.peer_rate allows one peer", float64(l.perSecond)))
	}
	u.active++
	return func() {
		l.mu.Lock()
		u.active--
		u.lastUse = l.now()
		l.mu.Unlock()
	}, nil
}

// refuseLocked logs a refusal (at most one line per peer per limitLogGap) and returns the
// call's error: RESOURCE_EXHAUSTED with the wait in a RetryInfo detail and in the message.
func (l *PeerLimits) refuseLocked(id peer.ID, u *peerUsage, method string, now time.Time, wait time.Duration, why string) error {
	u.refused++
	if now.Sub(u.loggedAt) >= limitLogGap {
		l.log.Warn("peer call refused", "peer", id, "method", method, "reason", why, "refused", u.refused)
		u.loggedAt, u.refused = now, 0
	}
	wait = wait.Round(time.Millisecond)
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("peer %s: %s; retry in %v or on another node", id, why, wait))
	if detailed, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = detailed
	}
	return st.Err()
}

// sweepLocked drops, once per limitSweepGap, the records of peers with no call running whose
// bucket has filled up again: they are the same as new ones.
func (l *PeerLimits) sweepLocked(now time.Time) {
	if now.Sub(l.swept) < limitSweepGap {
		return
	}
	l.swept = now
	for id, u := range l.peers {
		if u.active == 0 && u.bucket.TokensAt(now) >= float64(l.burst) && now.Sub(u.loggedAt) >= limitLogGap {
			delete(l.peers, id)
		}
	}
}

// RetryDelay returns the retry hint of a refusal from PeerLimits (or any status carrying a
// RetryInfo detail), and false when err carries none.
func RetryDelay(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
