// Package p2p is the mesh host and its admission: the node's libp2p host and identity, the
// private network (swarm key and invites), the connection gater (allowlist), discovery
// (bootstrap and remembered peers, the /syn4pse DHT, mDNS) and content routing of model digests.
// Each protocol over the host has its own package: p2p/rpc (gRPC over streams), p2p/blob (model
// blobs) and p2p/capability (capability gossip and the peer table).
package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/x/rate"
	"github.com/multiformats/go-multiaddr"
)

// DHTProtocolPrefix makes the mesh's DHT its own (/syn4pse/kad/1.0.0), apart from the public
// IPFS one.
const DHTProtocolPrefix = "/syn4pse"

// DefaultDialTimeout bounds every dial. A peer that lacks the swarm key never answers the PSK
// handshake, so without a deadline the dial would hang.
const DefaultDialTimeout = 10 * time.Second

// Limits sized for a home node: a mesh of a few to a few dozen machines, each serving model
// streams and blob transfers to the others.
const (
	connLowWater    = 32
	connHighWater   = 96
	connGracePeriod = time.Minute
	// rcmgrMemory and rcmgrFDs scale rcmgr.DefaultLimits the same on every machine: 256
	// connections (128 inbound), 4096 streams (2048 inbound), 1152 MiB of buffers, 1024 FDs;
	// per peer 8 connections, 768 streams (384 inbound), 192 MiB.
	rcmgrMemory = 1 << 30
	rcmgrFDs    = 1024
	// perIPConns is how many concurrent inbound connections one IPv4 address (or IPv6 /56) may
	// hold, default 8: several nodes behind one NAT reach a remote node from one address.
	perIPConns = 64
	// perIPRate and perIPBurst bound new inbound connections per address per second (default
	// 0.2/s, burst 16), for the same reason. Loopback is never limited.
	perIPRate  = 2
	perIPBurst = 64
)

// Config is what New needs; the node fills it from syn4pse.toml.
type Config struct {
	// DataDir holds identity.key and peers.json.
	DataDir string
	// Name is the node name shown to peers, sent as the identify agent version.
	Name string
	// ListenAddrs are TCP multiaddrs, at least one (the node's default is p2p.listen's). QUIC, WebTransport and WebRTC
	// cannot carry a swarm key, so they are refused.
	ListenAddrs []string
	// SwarmKey admits the mesh's members; nil runs standalone: New returns ErrStandalone.
	SwarmKey *SwarmKey
	// Bootstrap are members' multiaddrs with /p2p/<id>, dialled at start.
	Bootstrap []string
	// Allow narrows the mesh to these peers; empty admits every holder of the swarm key.
	Allow []peer.ID
	// MDNS finds members on the LAN.
	MDNS bool
	// NAT turns on port mapping (UPnP, NAT-PMP), hole punching and the AutoNAT service.
	NAT bool
	// Relay uses members as circuit relays when this node is unreachable, and serves as one
	// when it is publicly reachable.
	Relay bool
	// DialTimeout bounds every dial, default DefaultDialTimeout.
	DialTimeout time.Duration
	// TopicScores are the GossipSub peer-score parameters of the topics the node uses
	// (capability.ScoreParams for the capability topic). Messages on a topic without them
	// cost their sender nothing, however invalid.
	TopicScores map[string]*pubsub.TopicScoreParams
}

// ErrStandalone is returned by New when there is no swarm key: the node runs alone.
var ErrStandalone = errors.New("no swarm key: running standalone")

// Host is this node on the mesh: it owns the libp2p host, the DHT, GossipSub, and the
// discovery that keeps it connected (bootstrap and remembered peers, mDNS).
type Host struct {
	host      host.Host
	dht       *dht.IpfsDHT
	pubsub    *pubsub.PubSub
	cfg       Config
	log       *slog.Logger
	bootstrap []peer.AddrInfo
	book      *peerBook
	mdns      mdns.Service
	ready     chan struct{} // closed once the first dials have one success or have all ended
	scores    peerScores

	// cancel stops pubsub and every goroutine in wg: discovery loops and in-flight dials.
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New joins the mesh. It creates the DHT and GossipSub before dialling anyone (a peer that
// connects first would miss them), then dials the bootstrap and remembered peers, each bounded
// by DialTimeout, and returns once one of them is connected or all have been tried; discovery
// goes on in the background until Close. Only TCP is used: QUIC, WebTransport and WebRTC cannot
// carry the swarm key. ctx bounds New itself, not the Host's life.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.SwarmKey == nil {
		return nil, ErrStandalone
	}
	if cfg.DataDir == "" {
		return nil, errors.New("p2p: Config.DataDir is empty")
	}
	if len(cfg.ListenAddrs) == 0 {
		return nil, errors.New("p2p: Config.ListenAddrs is empty")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	listen, err := parseListenAddrs(cfg.ListenAddrs)
	if err != nil {
		return nil, err
	}
	bootstrap, err := parseBootstrap(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	key, err := LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	log := slog.Default().With("component", "p2p")
	relays := &relayCandidates{}
	opts, err := libp2pOptions(cfg, key, listen, log, relays)
	if err != nil {
		return nil, err
	}
	lh, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p: %w", err)
	}
	relays.host.Store(&lh)

	h := &Host{host: lh, cfg: cfg, log: log.With("peer_id", lh.ID().String()), bootstrap: bootstrap}
	h.scores.log = h.log
	h.book = loadPeerBook(peersFilePath(cfg.DataDir), h.log)
	life, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	fail := func(err error) (*Host, error) {
		cancel()
		if h.dht != nil {
			_ = h.dht.Close()
		}
		_ = lh.Close()
		return nil, err
	}
	h.dht, err = dht.New(lh,
		dht.ProtocolPrefix(DHTProtocolPrefix),
		dht.Mode(dht.ModeServer),
		// No dht.BootstrapPeers: the DHT would dial them itself the moment it starts, without
		// the tie-break of dialAll; the dial loop dials and redials them.
	)
	if err != nil {
		return fail(fmt.Errorf("start DHT: %w", err))
	}
	h.pubsub, err = pubsub.NewGossipSub(life, lh,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithPeerOutboundQueueSize(1024),
		pubsub.WithValidateQueueSize(1024),
		pubsub.WithPeerExchange(true),
		pubsub.WithPeerScore(peerScoreParams(cfg.TopicScores), peerScoreThresholds()),
		pubsub.WithPeerScoreInspect(pubsub.ExtendedPeerScoreInspectFn(h.scores.update), scoreInspectPeriod),
	)
	if err != nil {
		return fail(fmt.Errorf("start GossipSub: %w", err))
	}
	if err := h.startDiscovery(life); err != nil {
		return fail(err)
	}
	select {
	case <-h.ready:
	case <-ctx.Done():
		_ = h.Close()
		return nil, ctx.Err()
	}
	h.log.Info("mesh host started", "swarm", *cfg.SwarmKey, "addrs", h.Addrs(), "peers", len(lh.Network().Peers()))
	return h, nil
}

// Libp2p returns the libp2p host, to open streams and register protocols.
func (h *Host) Libp2p() host.Host { return h.host }

// DHT returns the mesh's Kademlia DHT.
func (h *Host) DHT() *dht.IpfsDHT { return h.dht }

// PubSub returns the mesh's GossipSub router (signed, StrictSign, with peer scoring: see
// GraylistThreshold).
func (h *Host) PubSub() *pubsub.PubSub { return h.pubsub }

// ID returns this node's peer ID.
func (h *Host) ID() peer.ID { return h.host.ID() }

// Addrs returns this node's addresses, loopback included, each ending in /p2p/<id>: what an
// invite carries.
func (h *Host) Addrs() []multiaddr.Multiaddr {
	addrs := h.host.Addrs()
	if ifaces, err := h.host.Network().InterfaceListenAddresses(); err == nil {
		addrs = append(addrs, ifaces...)
	}
	self, err := multiaddr.NewComponent("p2p", h.ID().String())
	if err != nil {
		return nil
	}
	seen := make(map[string]bool, len(addrs))
	out := make([]multiaddr.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		if seen[string(a.Bytes())] {
			continue
		}
		seen[string(a.Bytes())] = true
		out = append(out, a.Encapsulate(self.Multiaddr()))
	}
	return out
}

// userAgentPrefix starts the identify agent version of every syn4pse node; the node name
// follows.
const userAgentPrefix = "syn4pse/"

// PeerName returns the node name a connected (or recently seen) peer announced, or "" if
// unknown.
func (h *Host) PeerName(id peer.ID) string {
	v, err := h.host.Peerstore().Get(id, "AgentVersion")
	if err != nil {
		return ""
	}
	s, _ := v.(string)
	name, ok := strings.CutPrefix(s, userAgentPrefix)
	if !ok {
		return ""
	}
	return name
}

// Close stops discovery, saves the remembered peers, and closes the DHT, GossipSub and the
// libp2p host. It is safe to call more than once.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.cancel()
		var errs []error
		if h.mdns != nil {
			errs = append(errs, h.mdns.Close())
		}
		h.wg.Wait()
		if err := h.savePeers(); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, h.dht.Close(), h.host.Close())
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}

// libp2pOptions configures the libp2p host: TCP only with the swarm key, the resource and
// connection managers, the allowlist gater, and NAT traversal and relays when enabled.
func libp2pOptions(cfg Config, key crypto.PrivKey, listen []multiaddr.Multiaddr, log *slog.Logger, relays *relayCandidates) ([]libp2p.Option, error) {
	rm, err := newResourceManager()
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(connLowWater, connHighWater, connmgr.WithGracePeriod(connGracePeriod))
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.PrivateNetwork(cfg.SwarmKey[:]),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ListenAddrs(listen...),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.WithDialTimeout(cfg.DialTimeout),
		libp2p.UserAgent(userAgentPrefix + cfg.Name),
		libp2p.DisableMetrics(),
	}
	if len(cfg.Allow) > 0 {
		opts = append(opts, libp2p.ConnectionGater(newAllowGater(cfg.Allow, log)))
	}
	if cfg.NAT {
		opts = append(opts, libp2p.NATPortMap(), libp2p.EnableHolePunching(), libp2p.EnableNATService())
	}
	if cfg.Relay {
		opts = append(opts, libp2p.EnableRelay(), libp2p.EnableRelayService(),
			libp2p.EnableAutoRelayWithPeerSource(relays.find))
	} else {
		opts = append(opts, libp2p.DisableRelay())
	}
	return opts, nil
}

// parseListenAddrs checks that every listen address is TCP, the only transport here that
// carries a swarm key.
func parseListenAddrs(ss []string) ([]multiaddr.Multiaddr, error) {
	out := make([]multiaddr.Multiaddr, 0, len(ss))
	for _, s := range ss {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", s, err)
		}
		if _, err := a.ValueForProtocol(multiaddr.P_TCP); err != nil {
			return nil, fmt.Errorf("listen address %q: only TCP can carry the swarm key (QUIC, WebTransport and WebRTC cannot)", s)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseBootstrap turns multiaddrs with /p2p/<id> into AddrInfos, merging addresses of one peer.
func parseBootstrap(ss []string) ([]peer.AddrInfo, error) {
	addrs := make([]multiaddr.Multiaddr, 0, len(ss))
	for _, s := range ss {
		a, err := multiaddr.NewMultiaddr(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("bootstrap address %q: %w", s, err)
		}
		if _, err := a.ValueForProtocol(multiaddr.P_P2P); err != nil {
			return nil, fmt.Errorf("bootstrap address %q: needs a /p2p/<peer ID> suffix", s)
		}
		addrs = append(addrs, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		return nil, fmt.Errorf("bootstrap addresses: %w", err)
	}
	return infos, nil
}

// newResourceManager returns a resource manager with fixed limits (see rcmgrMemory) whatever
// the machine, and per-address inbound limits raised so nodes behind one NAT can all connect.
func newResourceManager() (network.ResourceManager, error) {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	limiter := rcmgr.NewFixedLimiter(scaling.Scale(rcmgrMemory, rcmgrFDs))
	perIP := rate.Limit{RPS: perIPRate, Burst: perIPBurst}
	return rcmgr.NewResourceManager(limiter,
		rcmgr.WithMetricsDisabled(),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: perIPConns}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: perIPConns}, {PrefixLength: 48, ConnCount: 4 * perIPConns}},
		),
		rcmgr.WithConnRateLimiters(&rate.Limiter{
			NetworkPrefixLimits: []rate.PrefixLimit{
				{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
				{Prefix: netip.MustParsePrefix("::1/128")},
			},
			SubnetRateLimiter: rate.SubnetLimiter{
				IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: perIP}},
				IPv6SubnetLimits: []rate.SubnetLimit{{PrefixLength: 56, Limit: perIP}, {PrefixLength: 48, Limit: rate.Limit{RPS: 4 * perIPRate, Burst: 4 * perIPBurst}}},
				GracePeriod:      time.Minute,
			},
		}),
	)
}

// allowGater admits only the peers in Config.Allow, after the handshake proves who they are.
type allowGater struct {
	allow map[peer.ID]bool
	log   *slog.Logger

	mu     sync.Mutex
	logged map[peer.ID]time.Time // last warning per denied peer, to keep a retrying peer quiet
}

func newAllowGater(ids []peer.ID, log *slog.Logger) *allowGater {
	g := &allowGater{allow: make(map[peer.ID]bool, len(ids)), log: log, logged: map[peer.ID]time.Time{}}
	for _, id := range ids {
		g.allow[id] = true
	}
	return g
}

// InterceptPeerDial refuses to dial a peer outside the allowlist (the DHT may name some).
func (g *allowGater) InterceptPeerDial(p peer.ID) bool {
	if g.allow[p] {
		return true
	}
	g.log.Debug("not dialling peer outside p2p.allow", "peer", p)
	return false
}

// InterceptAddrDial allows every address of an allowed peer.
func (g *allowGater) InterceptAddrDial(peer.ID, multiaddr.Multiaddr) bool { return true }

// InterceptAccept allows the connection to proceed to the handshake, which names the peer.
func (g *allowGater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured admits an authenticated peer only if it is in the allowlist.
func (g *allowGater) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	if g.allow[p] {
		return true
	}
	now := time.Now()
	g.mu.Lock()
	quiet := now.Sub(g.logged[p]) < time.Minute
	if !quiet {
		if len(g.logged) > 1024 {
			clear(g.logged)
		}
		g.logged[p] = now
	}
	g.mu.Unlock()
	if !quiet {
		g.log.Warn("refused peer: not in p2p.allow", "peer", p, "remote", addrs.RemoteMultiaddr(), "direction", dir)
	}
	return false
}

// InterceptUpgraded allows what InterceptSecured admitted.
func (g *allowGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// relayCandidates offers AutoRelay this node's connected peers as relays: they are mesh
// members, and those that are publicly reachable run the relay service.
type relayCandidates struct {
	host atomic.Pointer[host.Host]
}

func (r *relayCandidates) find(_ context.Context, num int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, max(num, 0))
	defer close(out)
	hp := r.host.Load()
	if hp == nil {
		return out
	}
	h := *hp
	for _, id := range h.Network().Peers() {
		if len(out) == cap(out) {
			break
		}
		out <- peer.AddrInfo{ID: id, Addrs: h.Peerstore().Addrs(id)}
	}
	return out
}
