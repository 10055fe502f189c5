package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc"
	gproto "google.golang.org/protobuf/proto"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/pull"
	"github.com/ekisa-team/syn4pse/node/router"
	"github.com/ekisa-team/syn4pse/p2p"
	"github.com/ekisa-team/syn4pse/p2p/blob"
	"github.com/ekisa-team/syn4pse/p2p/capability"
	"github.com/ekisa-team/syn4pse/p2p/rpc"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Files of the mesh in the data dir, written by `syn4pse mesh init|join`.
const (
	SwarmKeyFile  = "swarm.key"
	BootstrapFile = "bootstrap.txt"
)

// mesh is the node's part in the mesh: the libp2p host, the gRPC services on it, capability
// announcements and the clients that forward requests to peers.
type mesh struct {
	host      *p2p.Host
	announcer *capability.Announcer
	clients   *rpc.PeerClients
	bans      *router.Bans // peers left out for failing repeatedly, shared with the router
	rpc       io.Closer
	blobs     *blob.Server
	mdns      bool
	allow     int

	stop    context.CancelFunc
	watcher sync.WaitGroup
	// poked asks the watcher to look at the capability now (a model loaded or unloaded).
	poked chan struct{}
}

// poke makes the watcher republish at once if what this node serves changed.
func (m *mesh) poke() {
	select {
	case m.poked <- struct{}{}:
	default:
	}
}

// startMesh joins the mesh when the data dir holds a swarm key; it returns nil, nil for a
// standalone node.
func startMesh(ctx context.Context, cfg *config.Config, srv *grpc.Server, self func() *pb.Capability) (*mesh, error) {
	key, err := p2p.LoadSwarmKey(filepath.Join(cfg.DataDir, SwarmKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		slog.Info("no mesh configured: running standalone (syn4pse mesh init, or mesh join TOKEN, to join one)")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("swarm key: %w", err)
	}
	bootstrap, err := readBootstrap(filepath.Join(cfg.DataDir, BootstrapFile))
	if err != nil {
		return nil, err
	}
	allow := make([]peer.ID, 0, len(cfg.P2P.Allow))
	for _, s := range cfg.P2P.Allow {
		id, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("%w: p2p.allow: %q is not a peer ID", config.ErrInvalid, s)
		}
		allow = append(allow, id)
	}
	host, err := p2p.New(ctx, p2p.Config{
		DataDir:     cfg.DataDir,
		Name:        nodeName(cfg),
		ListenAddrs: cfg.P2P.Listen,
		SwarmKey:    &key,
		Bootstrap:   append(append([]string{}, cfg.P2P.Bootstrap...), bootstrap...),
		Allow:       allow,
		MDNS:        cfg.P2P.MDNS,
		NAT:         cfg.P2P.NAT,
		Relay:       cfg.P2P.Relay,
		TopicScores: map[string]*pubsub.TopicScoreParams{capability.Topic: capability.ScoreParams(cfg.P2P.AnnounceInterval)},
	})
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	// A peer's reply may be as large as this node takes from its own clients (gRPC's default
	// 4 MiB would fail a large embeddings batch forwarded to a peer).
	messageSize := grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcMessageSize(cfg.Server.Limits)),
		grpc.MaxCallSendMsgSize(grpcMessageSize(cfg.Server.Limits)))
	m := &mesh{host: host, clients: rpc.NewPeerClients(host.Libp2p(), messageSize), mdns: cfg.P2P.MDNS, allow: len(allow),
		poked: make(chan struct{}, 1)}
	if m.rpc, err = rpc.Serve(host.Libp2p(), srv); err != nil {
		m.close()
		return nil, err
	}
	firstSeq, err := p2p.ReserveSequences(cfg.DataDir, time.Now())
	if err != nil {
		m.close()
		return nil, err
	}
	m.announcer, err = capability.NewAnnouncer(host.Libp2p(), host.PubSub(), self, capability.AnnouncerOptions{
		Interval: cfg.P2P.AnnounceInterval, TTL: cfg.P2P.PeerTTL, FirstSequence: firstSeq,
	})
	if err != nil {
		m.close()
		return nil, err
	}
	watchCtx, stop := context.WithCancel(context.Background())
	m.stop = stop
	m.watcher.Add(1)
	go func() {
		defer m.watcher.Done()
		m.watchCapability(watchCtx, self)
	}()
	slog.Info("joined the mesh", "peer_id", host.ID().String(), "swarm", key.Fingerprint(), "addrs", host.Addrs())
	return m, nil
}

// pokeGap spaces the looks that pokes ask for: the catalog pokes when any request starts or
// ends, and on a busy node that is many times a second. It matches the announcer's own gap
// between republishes, so a queue that moves still reaches peers within a fraction of a second.
const pokeGap = 100 * time.Millisecond

// watchCapability republishes as soon as what this node serves changes (a model loads, slots
// fill or free, its queue grows or shrinks): when poked, at most once per pokeGap, and twice a
// second in any case; the announcer coalesces bursts. The links, which the announcer adds to
// self(), are not compared: a connection that comes or goes, or a round trip that moves, rides
// on the next periodic republish rather than causing one. It also drops the pooled connections
// of peers that left the table.
func (m *mesh) watchCapability(ctx context.Context, self func() *pb.Capability) {
	var last []byte
	var looked time.Time
	known := map[peer.ID]bool{}
	provided := map[string]time.Time{}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-m.poked:
			if wait := time.Until(looked.Add(pokeGap)); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		looked = time.Now()
		c := self()
		b, _ := gproto.MarshalOptions{Deterministic: true}.Marshal(c)
		if string(b) != string(last) {
			last = b
			m.announcer.Changed()
		}
		m.provideDigests(ctx, c, provided)
		now := map[peer.ID]bool{}
		for _, e := range m.announcer.Table().Peers() {
			now[e.ID] = true
		}
		for id := range known {
			if !now[id] {
				m.clients.Forget(id)
			}
		}
		known = now
	}
}

// reprovideInterval renews DHT provider records well before they expire (48 h in kad-dht).
const reprovideInterval = 12 * time.Hour

// provideDigests announces in the DHT, under its content ID, each model file this node holds.
func (m *mesh) provideDigests(ctx context.Context, c *pb.Capability, provided map[string]time.Time) {
	for _, mc := range c.GetModels() {
		d := mc.GetDigest()
		if d == "" || time.Since(provided[d]) < reprovideInterval {
			continue
		}
		provided[d] = time.Now()
		m.watcher.Add(1)
		go func() {
			defer m.watcher.Done()
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := m.host.Provide(pctx, d); err != nil && ctx.Err() == nil {
				slog.Debug("provide model digest", "digest", d, "err", err)
			}
		}()
	}
}

func (m *mesh) close() error {
	if m == nil {
		return nil
	}
	if m.stop != nil {
		m.stop()
		m.watcher.Wait()
	}
	var errs []error
	if m.announcer != nil {
		errs = append(errs, m.announcer.Close())
	}
	if m.rpc != nil {
		errs = append(errs, m.rpc.Close())
	}
	if m.blobs != nil {
		errs = append(errs, m.blobs.Close())
	}
	errs = append(errs, m.clients.Close(), m.host.Close())
	return errors.Join(errs...)
}

// serveBlobs serves the blobs source offers to mesh members (every connected peer holds the
// swarm key), maxPerPeer transfers per peer at once (0: no limit).
func (m *mesh) serveBlobs(source blob.Source, maxPerPeer int) {
	m.blobs = blob.Serve(m.host.Libp2p(), source, blob.ServeOptions{MaxTransfersPerPeer: maxPerPeer})
}

// Offers implements pull.Mesh: the peers whose capabilities carry the blob (by digest, or by
// model name when digest is ""), then, for a digest some peer announces, its DHT providers
// outside the gossip mesh.
func (m *mesh) Offers(ctx context.Context, name, digest string) []pull.Offer {
	var offers []pull.Offer
	for _, e := range m.announcer.Table().Peers() {
		if m.bans.Banned(e.ID.String()) {
			continue
		}
		for _, mc := range e.Capability.GetModels() {
			matches := digest != "" && mc.GetDigest() == digest || digest == "" && mc.GetName() == name
			if matches && mc.GetDigest() != "" && mc.GetSizeBytes() > 0 {
				offers = append(offers, pull.Offer{Peer: e.ID, Digest: mc.GetDigest(), Size: mc.GetSizeBytes(),
					Modality: api.ModalityName(mc.GetModality()), Engine: mc.GetEngine()})
			}
		}
	}
	if digest != "" && len(offers) > 0 {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		found, _ := m.host.Providers(dctx, digest, 8)
		cancel()
		for _, ai := range found {
			if m.bans.Banned(ai.ID.String()) {
				continue
			}
			m.host.Libp2p().Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
			offers = append(offers, pull.Offer{Peer: ai.ID, Digest: digest, Size: offers[0].Size})
		}
	}
	return offers
}

// Fetch implements pull.Mesh over the blob protocol.
func (m *mesh) Fetch(ctx context.Context, from peer.ID, digest string, size int64, sink pull.Sink, progress func(int64)) error {
	return blob.Fetch(ctx, m.host.Libp2p(), from, digest, size, sink, progress)
}

// Report implements pull.Mesh: a transfer that ended well resets the peer's run of faults, one
// that failed counts towards a ban. A busy peer (at its per-peer transfer limit) and a pull
// cancelled here count neither way.
func (m *mesh) Report(from peer.ID, err error) {
	switch {
	case err == nil:
		m.bans.Success(from.String())
	case errors.Is(err, blob.ErrBusy), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
	default:
		m.bans.Fault(from.String(), err)
	}
}

// Self implements pull.Mesh.
func (m *mesh) Self() peer.ID { return m.host.ID() }

// readBootstrap reads the peers an invite brought, one multiaddr a line.
func readBootstrap(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var addrs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			addrs = append(addrs, line)
		}
	}
	return addrs, sc.Err()
}

func nodeName(cfg *config.Config) string {
	if cfg.P2P.Name != "" {
		return cfg.P2P.Name
	}
	host, _ := os.Hostname()
	return host
}

// selfCapability describes what this node serves, for the announcer.
func selfCapability(catalog *models.Manager, name string, hw *pb.Hardware) *pb.Capability {
	c := &pb.Capability{NodeName: name, Version: Version, Hardware: hw}
	for _, m := range catalog.List() {
		if m.State == models.StateUnavailable {
			continue
		}
		mc := &pb.ModelCapability{Name: m.Name, Digest: m.Digest, SizeBytes: m.SizeBytes, Modality: api.Modality(m.Modality), Engine: m.Engine,
			Loaded: m.State == models.StateLoaded, Parallel: int32(m.Info.Parallel), Inputs: m.Info.Inputs, Voices: m.Info.Voices}
		if mc.Loaded {
			// From the catalog's count of admitted requests, which moves before the catalog pokes
			// the watcher; the engine's own counts move a moment later.
			_, free, queued := slotUse(m)
			mc.FreeSlots, mc.QueueDepth = int32(free), int32(queued)
			mc.TokensPerSecond = m.Stats.TokensPerSecond()
		}
		c.Models = append(c.Models, mc)
	}
	return c
}

// localModels lists the models of this node that can serve.
func localModels(catalog *models.Manager) func() []string {
	return func() []string {
		var names []string
		for _, s := range catalog.List() {
			if s.State != models.StateUnavailable {
				names = append(names, s.Name)
			}
		}
		return names
	}
}

// localModel tells the router about a model of this node.
func localModel(catalog *models.Manager) func(string) router.LocalModel {
	return func(name string) router.LocalModel {
		s, ok := catalog.Status(name)
		if !ok {
			return router.LocalModel{}
		}
		return router.LocalModel{Declared: true, Unavailable: s.State == models.StateUnavailable, Loaded: s.State == models.StateLoaded,
			FreeSlots: max(s.Info.Parallel-s.Requests, 0)}
	}
}

// peerView is the router's view of the peer table.
type peerView struct {
	m *mesh
}

func (v peerView) candidate(e capability.PeerEntry, model string) (router.Candidate, bool) {
	c := router.Candidate{Peer: e.ID.String(), Name: e.Capability.GetNodeName(), RecentFailures: e.RecentFailures,
		RTT: v.m.host.Libp2p().Peerstore().LatencyEWMA(e.ID), GPUBytes: largestGPU(e.Capability.GetHardware())}
	if model == "" {
		return c, true
	}
	for _, mc := range e.Capability.GetModels() {
		if mc.GetName() == model {
			c.Loaded, c.FreeSlots, c.QueueDepth, c.TokensPerSecond = mc.GetLoaded(), int(mc.GetFreeSlots()), int(mc.GetQueueDepth()), mc.GetTokensPerSecond()
			c.ModelBytes = mc.GetSizeBytes()
			return c, true
		}
	}
	return c, false
}

func (v peerView) WithModel(model string) []router.Candidate {
	var out []router.Candidate
	for _, e := range v.m.announcer.Table().WithModel(model) {
		if c, ok := v.candidate(e, model); ok {
			out = append(out, c)
		}
	}
	return out
}

func (v peerView) Lookup(node string) (router.Candidate, bool) {
	for _, e := range v.m.announcer.Table().Peers() {
		if e.ID.String() == node || e.Capability.GetNodeName() == node {
			return v.candidate(e, "")
		}
	}
	return router.Candidate{}, false
}

func (v peerView) Models() []string {
	var names []string
	for _, e := range v.m.announcer.Table().Peers() {
		for _, mc := range e.Capability.GetModels() {
			names = append(names, mc.GetName())
		}
	}
	return names
}

func (v peerView) RecordFailure(id string) {
	if pid, err := peer.Decode(id); err == nil {
		v.m.announcer.Table().RecordFailure(pid)
	}
}

func (v peerView) RecordSuccess(id string) {
	if pid, err := peer.Decode(id); err == nil {
		v.m.announcer.Table().RecordSuccess(pid)
	}
}

// dial returns the pooled gRPC connection to a peer.
func (m *mesh) dial(ctx context.Context, id string) (grpc.ClientConnInterface, error) {
	pid, err := peer.Decode(id)
	if err != nil {
		return nil, err
	}
	conn, err := m.clients.Conn(ctx, pid)
	if err != nil {
		return nil, err
	}
	return requestIDConn{conn}, nil
}

// Peers implements api.MeshView.
func (m *mesh) Peers() []*pb.PeerInfo {
	h := m.host.Libp2p()
	var out []*pb.PeerInfo
	for _, e := range m.announcer.Table().Peers() {
		info := &pb.PeerInfo{PeerId: e.ID.String(), NodeName: e.Capability.GetNodeName(), Capability: e.Capability,
			LastSeenUnixMs: e.LastSeen.UnixMilli(), Connected: len(h.Network().ConnsToPeer(e.ID)) > 0,
			RecentFailures: int32(e.RecentFailures), Banned: m.bans.Banned(e.ID.String())}
		if score, ok := m.host.PeerScore(e.ID); ok {
			info.GossipScore = score.Score
		}
		if rtt := h.Peerstore().LatencyEWMA(e.ID); rtt > 0 {
			info.RttMs = float64(rtt.Microseconds()) / 1000
		}
		for _, a := range h.Peerstore().Addrs(e.ID) {
			info.Addrs = append(info.Addrs, a.String())
		}
		out = append(out, info)
	}
	return out
}

// Status implements api.MeshView.
func (m *mesh) Status() *pb.MeshStatusResponse {
	h := m.host.Libp2p()
	res := &pb.MeshStatusResponse{Enabled: true, PeerId: h.ID().String(), ConnectedPeers: int32(len(h.Network().Peers())),
		KnownPeers: int32(len(m.announcer.Table().Peers())), DhtRoutingTableSize: int32(m.host.DHT().RoutingTable().Size()),
		Mdns: m.mdns, AllowlistSize: int32(m.allow)}
	for _, a := range m.host.Addrs() {
		res.ListenAddrs = append(res.ListenAddrs, a.String())
	}
	return res
}
