// Package rpc carries the node's gRPC services over libp2p streams (/syn4pse/rpc/1.0.0): Serve
// gives a gRPC server a listener of peer streams, PeerClients pools client connections to peers,
// and PeerFromContext names the calling peer in a handler.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	grpcpeer "google.golang.org/grpc/peer"
)

// Protocol is the libp2p protocol that carries SYN4PSE's gRPC services between peers.
//
// Each gRPC connection is one libp2p stream: gRPC multiplexes its calls inside it as HTTP/2
// streams. The libp2p connection underneath already encrypts and authenticates both ends, so
// gRPC runs with insecure transport credentials on it. Liveness is libp2p's job too: yamux pings
// every 30 s and closes a connection whose ping goes unanswered for 10 s, which resets every
// stream on it; gRPC keepalive pings on top would add nothing but the risk of a server's default
// enforcement policy answering them with GOAWAY ("too_many_pings").
const Protocol protocol.ID = "/syn4pse/rpc/1.0.0"

// Client-side timeouts, sized for peers on a LAN or a home network.
const (
	// rpcConnectTimeout bounds one connection attempt (libp2p dial, protocol negotiation and the
	// HTTP/2 handshake) when the caller's context has no earlier deadline.
	rpcConnectTimeout = 10 * time.Second
	// rpcBackoffMax caps gRPC's wait between reconnection attempts: a LAN peer that restarts is
	// back within seconds, and gRPC's default (two minutes) would keep it unreachable for long.
	rpcBackoffMax = 5 * time.Second
	// rpcIdleTimeout releases the libp2p stream of a pooled connection nobody has used for this
	// long; the next call reconnects.
	rpcIdleTimeout = 5 * time.Minute
)

// Serve serves srv on h's Protocol until the returned listener is closed (or srv stops).
// Handlers learn the calling peer with PeerFromContext.
//
// srv may serve other listeners too (the local TCP port): the same services answer peers and
// local clients. It must use insecure transport credentials (gRPC's default), the ones
// PeerClients dials with. Closing the returned listener stops accepting new peer connections
// and waits for srv to stop serving it; connections already accepted last until srv stops
// (GracefulStop drains them). Call Serve once per host: a second call takes the protocol over
// from the first.
func Serve(h host.Host, srv *grpc.Server) (io.Closer, error) {
	lis, err := gostream.Listen(h, Protocol)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", Protocol, err)
	}
	served := &rpcListener{lis: lis, done: make(chan struct{})}
	go func() {
		defer close(served.done)
		// Serve returns when the listener is closed or srv stops; either way its error only says
		// which of the two happened, and the owner of srv already knows.
		_ = srv.Serve(peerListener{lis})
	}()
	return served, nil
}

// rpcListener is what Serve returns: it owns the goroutine running srv.Serve.
type rpcListener struct {
	lis       net.Listener
	closeOnce sync.Once
	done      chan struct{}
}

// Close stops accepting peer connections and waits until srv.Serve has returned.
func (l *rpcListener) Close() error {
	var err error
	l.closeOnce.Do(func() { err = l.lis.Close() })
	<-l.done
	return err
}

// peerListener wraps gostream's listener so that every accepted connection's RemoteAddr is a
// peerAddr: gRPC copies RemoteAddr into the peer.Peer of each call's context, which is how
// PeerFromContext finds the caller. peerAddr is unexported, so a connection that did not come
// through Serve (TCP, say) can never pass for a libp2p peer.
type peerListener struct {
	net.Listener
}

// Accept returns the next peer connection, labelled with its remote peer ID.
func (l peerListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// gostream's connection embeds the libp2p stream, whose connection knows the remote peer
	// as authenticated by the security handshake.
	stream, ok := conn.(network.Stream)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("gostream accepted a %T, not a libp2p stream", conn)
	}
	return peerConn{Conn: conn, remote: peerAddr{stream.Conn().RemotePeer()}}, nil
}

// peerConn is a gostream connection whose RemoteAddr names the remote peer as a peerAddr.
type peerConn struct {
	net.Conn
	remote peerAddr
}

// RemoteAddr returns the calling peer's ID as a net.Addr.
func (c peerConn) RemoteAddr() net.Addr { return c.remote }

// peerAddr is the address of a libp2p peer that called through Serve.
type peerAddr struct{ id peer.ID }

// Network returns gostream's network name, "libp2p".
func (a peerAddr) Network() string { return gostream.Network }

// String returns the peer ID.
func (a peerAddr) String() string { return a.id.String() }

// PeerFromContext returns the libp2p peer that made the call, for calls that came over Serve.
//
// gRPC records each connection's remote address in the call's context (google.golang.org/grpc/peer);
// Serve labels the connections it accepts with the peer ID that libp2p authenticated. Calls
// from any other listener (local TCP clients) return false.
func PeerFromContext(ctx context.Context) (peer.ID, bool) {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return "", false
	}
	addr, ok := p.Addr.(peerAddr)
	if !ok {
		return "", false
	}
	return addr.id, true
}

// PeerClients dials peers' gRPC services over libp2p and reuses one connection per peer.
//
// The host must know how to reach a peer (its addresses in the peerstore, from discovery or the
// DHT) before Conn is called for it. PeerClients is safe for concurrent use.
type PeerClients struct {
	host host.Host
	opts []grpc.DialOption

	mu     sync.Mutex
	conns  map[peer.ID]*pooledConn
	closed bool
}

// pooledConn is one peer's connection and the last error its dialer met, which explains a
// failure better than the connection state alone.
type pooledConn struct {
	cc      *grpc.ClientConn
	dialErr atomic.Pointer[error]
}

// NewPeerClients returns a pool of gRPC connections to peers, dialled through h. opts come after
// the pool's defaults (insecure credentials, the libp2p dialer, LAN-sized backoff and idle
// timeout), so they may override them; they should not replace the dialer.
func NewPeerClients(h host.Host, opts ...grpc.DialOption) *PeerClients {
	return &PeerClients{host: h, opts: opts, conns: make(map[peer.ID]*pooledConn)}
}

// Conn returns the pooled connection to id, creating it on first use, and waits until it is
// ready or ctx ends. A connection that has failed is closed and replaced by a fresh one, so a
// peer that comes back is reachable at once rather than after gRPC's reconnection backoff. When
// Conn gives up because ctx ended, the connection stays pooled and gRPC goes on connecting in the
// background, so a later Conn may find it ready; Forget stops it.
func (c *PeerClients) Conn(ctx context.Context, id peer.ID) (*grpc.ClientConn, error) {
	pc, stale, err := c.pooled(id)
	if stale != nil {
		stale.Close()
	}
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, pc.cc); err != nil {
		if ctx.Err() == nil {
			c.drop(id, pc)
			if dialErr := pc.dialErr.Load(); dialErr != nil {
				err = fmt.Errorf("%w: %w", err, *dialErr)
			}
		}
		return nil, fmt.Errorf("connect to peer %s: %w", id, err)
	}
	return pc.cc, nil
}

// pooled returns id's connection, replacing a failed one; stale is the failed connection, for
// the caller to close outside the lock.
func (c *PeerClients) pooled(id peer.ID) (pc *pooledConn, stale *grpc.ClientConn, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, fmt.Errorf("peer clients: %w", net.ErrClosed)
	}
	if pc := c.conns[id]; pc != nil {
		switch pc.cc.GetState() {
		case connectivity.TransientFailure, connectivity.Shutdown:
			stale = pc.cc
			delete(c.conns, id)
		default:
			return pc, nil, nil
		}
	}
	pc, err = c.dial(id)
	if err != nil {
		return nil, stale, err
	}
	c.conns[id] = pc
	return pc, stale, nil
}

// dial creates (without connecting yet) a gRPC connection to id over Protocol.
func (c *PeerClients) dial(id peer.ID) (*pooledConn, error) {
	pc := &pooledConn{}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		conn, err := gostream.Dial(ctx, c.host, id, Protocol)
		if err != nil {
			pc.dialErr.Store(&err)
			return nil, err
		}
		pc.dialErr.Store(nil)
		return conn, nil
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialer),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  250 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   rpcBackoffMax,
			},
			MinConnectTimeout: rpcConnectTimeout,
		}),
		grpc.WithIdleTimeout(rpcIdleTimeout),
	}, c.opts...)
	// passthrough hands the peer ID to the dialer untouched; the default dns resolver would try
	// to resolve it as a host name.
	cc, err := grpc.NewClient("passthrough:///"+id.String(), opts...)
	if err != nil {
		return nil, fmt.Errorf("grpc client for peer %s: %w", id, err)
	}
	pc.cc = cc
	return pc, nil
}

// errConnectFailed reports a connection attempt that gRPC gave up on.
var errConnectFailed = errors.New("connection failed")

// waitReady starts connecting cc if it is idle and waits until it is ready, fails or ctx ends.
func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	for {
		state := cc.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("%w (%s)", errConnectFailed, state)
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(ctx, state) {
			return ctx.Err()
		}
	}
}

// drop removes pc from the pool, if it is still id's connection, and closes it.
func (c *PeerClients) drop(id peer.ID, pc *pooledConn) {
	c.mu.Lock()
	if c.conns[id] == pc {
		delete(c.conns, id)
	}
	c.mu.Unlock()
	pc.cc.Close()
}

// Forget drops (and closes) the pooled conn, e.g. when the peer leaves. Calls in flight on it
// fail with codes.Canceled.
func (c *PeerClients) Forget(id peer.ID) {
	c.mu.Lock()
	pc := c.conns[id]
	delete(c.conns, id)
	c.mu.Unlock()
	if pc != nil {
		pc.cc.Close()
	}
}

// Close closes every pooled connection; Conn fails afterwards.
func (c *PeerClients) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns = nil
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, pc := range conns {
		if err := pc.cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
