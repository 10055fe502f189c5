package p2p

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/multiformats/go-multiaddr"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// PeersFile is the name, in the data directory, of the peers remembered from earlier runs.
const PeersFile = "peers.json"

// MDNSServiceName is the mDNS service syn4pse nodes announce and browse on the LAN.
const MDNSServiceName = "syn4pse"

const (
	// peersSaveInterval is how often peers.json is written, and the longest the host waits
	// between redials of known peers while it has fewer than connLowWater connections.
	peersSaveInterval = time.Minute
	// redialMin is the first wait before redialling known peers, doubled after each round
	// in which a dial failed: a node whose first dials failed (a lossy link, a simultaneous
	// open with a peer dialling it back) is not left alone for a minute.
	redialMin = 2 * time.Second
	// rememberFor is how long a peer not seen stays in peers.json.
	rememberFor = 30 * 24 * time.Hour
	// maxRememberedPeers and maxRememberedAddrs bound peers.json.
	maxRememberedPeers = 64
	maxRememberedAddrs = 16
	// mdnsDialDelay is how long the peer with the larger ID leaves the other to dial first.
	mdnsDialDelay = 2 * time.Second
	// knownDialDelay is, on average, how long the peer with the larger ID leaves a known peer
	// to dial first (dialAll); each wait is drawn between half and one and a half of it, so
	// two peers never stay in step. It is far longer than a dial takes to reach a peer of the
	// LAN, and short enough not to slow a node's start much when the other side does not dial.
	knownDialDelay = 500 * time.Millisecond
	// bootstrapTag protects connections to bootstrap peers from the connection manager.
	bootstrapTag = "syn4pse-bootstrap"
)

// Connect dials a peer, bounded by the configured DialTimeout: a peer without the swarm key
// would otherwise hang until ctx ends.
func (h *Host) Connect(ctx context.Context, ai peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.DialTimeout)
	defer cancel()
	if err := h.host.Connect(ctx, ai); err != nil {
		return fmt.Errorf("connect %s: %w", ai.ID, err)
	}
	return nil
}

// startDiscovery starts the goroutines that keep the host in the mesh, all stopped by ctx and
// waited for by Close: a recorder of connected peers, the dial loop (initial dials, DHT
// bootstrap, periodic redials and saves of peers.json) and, if enabled, mDNS. h.ready closes
// when the initial dials have one success or have all ended.
func (h *Host) startDiscovery(ctx context.Context) error {
	sub, err := h.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return fmt.Errorf("subscribe to connection events: %w", err)
	}
	for _, ai := range h.bootstrap {
		h.host.ConnManager().Protect(ai.ID, bootstrapTag)
	}
	h.ready = make(chan struct{})
	h.wg.Go(func() {
		defer sub.Close()
		h.recordPeers(ctx, sub)
	})
	h.wg.Go(func() { h.dialLoop(ctx) })
	if h.cfg.MDNS {
		found := make(chan peer.AddrInfo, 64)
		svc := mdns.NewMdnsService(h.host, MDNSServiceName, mdnsNotifee{ctx: ctx, found: found})
		if err := svc.Start(); err != nil {
			h.log.Warn("mDNS unavailable: LAN peers will not be found automatically", "err", err)
			_ = svc.Close()
		} else {
			h.mdns = svc
			h.wg.Go(func() { h.connectFound(ctx, found) })
		}
	}
	return nil
}

// recordPeers remembers every peer this host connects to, for peers.json.
func (h *Host) recordPeers(ctx context.Context, sub event.Subscription) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			ev := e.(event.EvtPeerConnectednessChanged)
			if ev.Connectedness == network.Connected && h.admits(ev.Peer) {
				h.book.seen(ev.Peer, time.Now())
			}
		}
	}
}

// dialLoop dials the bootstrap and remembered peers, bootstraps the DHT, then every
// peersSaveInterval saves peers.json; while below connLowWater connections it redials the
// known peers it is not connected to, after redialMin and then backing off to
// peersSaveInterval.
func (h *Host) dialLoop(ctx context.Context) {
	var readyOnce sync.Once
	markReady := func() { readyOnce.Do(func() { close(h.ready) }) }
	h.dialAll(ctx, h.knownPeers(), markReady)
	markReady()
	if err := h.dht.Bootstrap(ctx); err != nil && ctx.Err() == nil {
		h.log.Warn("DHT bootstrap", "err", err)
	}
	save := time.NewTicker(peersSaveInterval)
	defer save.Stop()
	wait := redialMin
	redial := time.NewTimer(wait)
	defer redial.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-save.C:
			if err := h.savePeers(); err != nil {
				h.log.Warn("save remembered peers", "err", err)
			}
		case <-redial.C:
			wait = h.redial(ctx, wait)
			redial.Reset(wait)
		}
	}
}

// redial dials, while below connLowWater, the known peers this host is not connected to, and
// returns the wait before the next round: redialMin when there was nothing to dial or every
// dial succeeded, else twice the last wait, at most peersSaveInterval. So a peer that has just
// gone is retried within seconds, and one that stays away once a minute.
func (h *Host) redial(ctx context.Context, wait time.Duration) time.Duration {
	if len(h.host.Network().Peers()) >= connLowWater {
		return redialMin
	}
	known := h.knownPeers()
	var connected atomic.Int32
	h.dialAll(ctx, known, func() { connected.Add(1) })
	if int(connected.Load()) == len(known) {
		return redialMin
	}
	return min(2*wait, peersSaveInterval)
}

// knownPeers returns the bootstrap and remembered peers this host is not connected to.
func (h *Host) knownPeers() []peer.AddrInfo {
	byID := make(map[peer.ID]int)
	var out []peer.AddrInfo
	for _, ai := range append(slices.Clone(h.bootstrap), h.book.infos()...) {
		if ai.ID == h.ID() || !h.admits(ai.ID) || h.host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if i, ok := byID[ai.ID]; ok {
			out[i].Addrs = append(out[i].Addrs, ai.Addrs...)
			continue
		}
		byID[ai.ID] = len(out)
		out = append(out, peer.AddrInfo{ID: ai.ID, Addrs: slices.Clone(ai.Addrs)})
	}
	return out
}

// dialAll dials every peer in parallel, each bounded by DialTimeout, and waits for them all;
// onConnected (if not nil) runs after each success.
//
// Two peers that know each other dial each other at the same moment when they start together
// (or one restarts as the other redials it). libp2p dials from its listen port (for hole
// punching), so the two dials can meet as one TCP connection, a simultaneous open, on which
// both sides start the security handshake as its client and both fail ("tls: received
// unexpected handshake message of type *tls.clientHelloMsg"); libp2p then backs off the
// address for seconds (go-libp2p#2925: no fix in libp2p). So, as for mDNS, the peer with the
// smaller ID dials at once and the other leaves it a jittered knownDialDelay, dialling only if
// no connection has come by then.
func (h *Host) dialAll(ctx context.Context, infos []peer.AddrInfo, onConnected func()) {
	var wg sync.WaitGroup
	for _, ai := range infos {
		wg.Go(func() {
			if h.ID() > ai.ID && h.awaitPeer(ctx, ai.ID, knownDialDelay/2+rand.N(knownDialDelay)) {
				h.log.Debug("known peer dialled first", "peer", ai.ID)
				if onConnected != nil {
					onConnected()
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			if err := h.Connect(ctx, ai); err != nil {
				if ctx.Err() == nil {
					h.log.Debug("known peer unreachable", "peer", ai.ID, "err", err)
				}
				return
			}
			h.log.Debug("connected to known peer", "peer", ai.ID)
			if onConnected != nil {
				onConnected()
			}
		})
	}
	wg.Wait()
}

// awaitPeer waits up to d for a connection with id, from either side, and reports whether
// there is one.
func (h *Host) awaitPeer(ctx context.Context, id peer.ID, d time.Duration) bool {
	sub, err := h.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return false // the host is closing
	}
	defer sub.Close()
	if h.host.Network().Connectedness(id) == network.Connected {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return h.host.Network().Connectedness(id) == network.Connected
		case e, ok := <-sub.Out():
			if !ok {
				return false
			}
			if ev := e.(event.EvtPeerConnectednessChanged); ev.Peer == id && ev.Connectedness == network.Connected {
				return true
			}
		}
	}
}

// admits reports whether the allowlist (if any) lets id in.
func (h *Host) admits(id peer.ID) bool {
	return len(h.cfg.Allow) == 0 || slices.Contains(h.cfg.Allow, id)
}

// savePeers refreshes the remembered peers from the peerstore and writes peers.json.
func (h *Host) savePeers() error {
	now := time.Now()
	connected := h.host.Network().Peers()
	for _, id := range connected {
		// The connection event may not have reached recordPeers yet.
		if h.admits(id) {
			h.book.seen(id, now)
		}
	}
	h.book.refresh(h.host.Peerstore(), connected, now)
	return h.book.save(now)
}

// mdnsNotifee hands peers found by mDNS to connectFound. libp2p calls it from goroutines of
// its own, so it never blocks: a peer dropped now is announced again shortly.
type mdnsNotifee struct {
	ctx   context.Context
	found chan<- peer.AddrInfo
}

// HandlePeerFound queues a found peer for connectFound.
func (n mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	select {
	case n.found <- ai:
	case <-n.ctx.Done():
	default:
	}
}

// connectFound dials the peers mDNS finds, each in a goroutine of its own, until ctx ends.
func (h *Host) connectFound(ctx context.Context, found <-chan peer.AddrInfo) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var ai peer.AddrInfo
		select {
		case <-ctx.Done():
			return
		case ai = <-found:
		}
		if ai.ID == h.ID() || !h.admits(ai.ID) || h.host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		wg.Go(func() { h.connectLANPeer(ctx, ai) })
	}
}

// connectLANPeer dials a peer mDNS found. Both peers find each other at the same moment, and
// two TCP dials between the same listen ports (libp2p dials from its listen port, for hole
// punching) merge into one connection where both sides act as initiator and the handshake fails;
// mDNS reports a peer only once, so neither would retry. The peer with the smaller ID dials at
// once; the other dials only if no connection has come after mdnsDialDelay (and stops waiting
// as soon as one does).
func (h *Host) connectLANPeer(ctx context.Context, ai peer.AddrInfo) {
	if h.ID() > ai.ID && (h.awaitPeer(ctx, ai.ID, mdnsDialDelay) || ctx.Err() != nil) {
		return
	}
	if err := h.Connect(ctx, ai); err != nil {
		if ctx.Err() == nil {
			h.log.Debug("peer found by mDNS unreachable (another mesh?)", "peer", ai.ID, "err", err)
		}
		return
	}
	h.log.Info("connected to LAN peer found by mDNS", "peer", ai.ID)
}

// peerBook is the set of peers remembered across runs, saved as peers.json.
type peerBook struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	peers map[peer.ID]*bookEntry
}

type bookEntry struct {
	addrs    []multiaddr.Multiaddr
	lastSeen time.Time
	thisRun  bool // connected during this run: its addresses are refreshed from the peerstore
}

// peersFile is the JSON form of peers.json.
type peersFile struct {
	Version int          `json:"version"`
	Peers   []peersEntry `json:"peers"`
}

type peersEntry struct {
	ID       string    `json:"id"`
	Addrs    []string  `json:"addrs"`
	LastSeen time.Time `json:"last_seen"`
}

func peersFilePath(dataDir string) string { return filepath.Join(dataDir, PeersFile) }

// loadPeerBook reads peers.json. It is a cache: a missing file is an empty book, and a broken
// one is logged and replaced at the next save.
func loadPeerBook(path string, log *slog.Logger) *peerBook {
	b := &peerBook{path: path, log: log, peers: map[peer.ID]*bookEntry{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b
	}
	var file peersFile
	if err == nil {
		err = json.Unmarshal(data, &file)
	}
	if err != nil {
		log.Warn("ignoring unreadable remembered peers", "path", path, "err", err)
		return b
	}
	for _, p := range file.Peers {
		id, err := peer.Decode(p.ID)
		if err != nil {
			continue
		}
		e := &bookEntry{lastSeen: p.LastSeen}
		for _, s := range p.Addrs {
			if a, err := multiaddr.NewMultiaddr(s); err == nil {
				e.addrs = append(e.addrs, a)
			}
		}
		b.peers[id] = e
	}
	return b
}

// seen marks id connected at now.
func (b *peerBook) seen(id peer.ID, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.peers[id]
	if e == nil {
		e = &bookEntry{}
		b.peers[id] = e
	}
	e.lastSeen, e.thisRun = now, true
}

// infos returns the remembered peers that have addresses.
func (b *peerBook) infos() []peer.AddrInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]peer.AddrInfo, 0, len(b.peers))
	for id, e := range b.peers {
		if len(e.addrs) > 0 {
			out = append(out, peer.AddrInfo{ID: id, Addrs: slices.Clone(e.addrs)})
		}
	}
	return out
}

// refresh takes the current addresses of peers seen this run from the peerstore (it forgets
// them some time after a disconnect, so earlier ones are kept then) and marks the connected
// peers seen now.
func (b *peerBook) refresh(ps peerstore.Peerstore, connected []peer.ID, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range connected {
		if e := b.peers[id]; e != nil {
			e.lastSeen = now
		}
	}
	for id, e := range b.peers {
		if !e.thisRun {
			continue
		}
		if addrs := ps.Addrs(id); len(addrs) > 0 {
			e.addrs = addrs[:min(len(addrs), maxRememberedAddrs)]
		}
	}
}

// save writes the most recently seen peers (up to maxRememberedPeers, none older than
// rememberFor) to peers.json atomically.
func (b *peerBook) save(now time.Time) error {
	b.mu.Lock()
	file := peersFile{Version: 1}
	for id, e := range b.peers {
		if len(e.addrs) == 0 || now.Sub(e.lastSeen) > rememberFor {
			continue
		}
		entry := peersEntry{ID: id.String(), LastSeen: e.lastSeen.UTC().Truncate(time.Second)}
		for _, a := range e.addrs {
			entry.Addrs = append(entry.Addrs, a.String())
		}
		file.Peers = append(file.Peers, entry)
	}
	b.mu.Unlock()
	slices.SortFunc(file.Peers, func(x, y peersEntry) int {
		if c := y.LastSeen.Compare(x.LastSeen); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
	file.Peers = file.Peers[:min(len(file.Peers), maxRememberedPeers)]
	data, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(b.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save %s: %w", b.path, err)
	}
	return nil
}
