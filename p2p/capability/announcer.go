// Package capability is capability gossip: the Announcer publishes this node's signed
// Capability on the GossipSub topic syn4pse/capabilities/1 with the mesh peers it is connected
// to (its links), validates its peers' (sender, sequence, age, size, links) and keeps them in a
// PeerTable whose entries expire after a TTL or a disconnect.
package capability

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Topic is the GossipSub topic of capability announcements.
const Topic = "syn4pse/capabilities/1"

// MaxLinks is the most links an announcement carries; the validator refuses one with more. It
// keeps announcements small (about 4 KiB of links at most) on a node connected to many peers.
const MaxLinks = 64

const (
	defaultAnnounceInterval = 3 * time.Second
	defaultAnnounceTTL      = 8 * time.Second
	defaultAnnounceMaxSize  = 64 << 10

	// maxClockSkew is how far ahead of this node's clock an announcement may be dated.
	maxClockSkew = 5 * time.Minute
	// maxAnnounceAge is how old an announcement may be; older ones are replays or come from a
	// badly wrong clock, and are not propagated. Past maxAnnounceAge+maxClockSkew no honest
	// peer can have relayed one (each drops it at maxAnnounceAge by its own clock, and clocks
	// are assumed within maxClockSkew of each other), so the sender is penalised.
	maxAnnounceAge = time.Hour
	// highWaterRetention is how long the validator remembers a silent peer's last sequence. It
	// exceeds maxAnnounceAge plus maxClockSkew, so a replay never outlives its peer's mark.
	highWaterRetention = 2 * time.Hour
	// recentSequences is how many of a peer's latest accepted sequences the validator keeps
	// with the message that carried each, to recognise one signed again in another message.
	recentSequences = 16
	// minPublishGap spaces republishes triggered by Changed, so a burst of changes (a queue
	// that moves with every request) becomes one announcement.
	minPublishGap = 100 * time.Millisecond
	// subscriptionBuffer holds announcements waiting for the table. GossipSub drops what does
	// not fit; the default (32) lost announcements when 50 hosts started at once.
	subscriptionBuffer = 512
	// welcomeGap spaces republishes triggered by newcomers (peers heard from for the first
	// time). Answering a newcomer lets it learn of this node within about a second rather than
	// an Interval; the gap bounds the cost while many nodes start at once. A peer that expired
	// and returns is no newcomer: under overload, churn must not breed more traffic.
	welcomeGap = time.Second
	// joinSettle is how long after a peer subscribes this node announces again: GossipSub
	// grafts peers into the mesh on its heartbeat (1 s by default), and a message published
	// before then reaches only the peers already in the mesh.
	joinSettle = 1500 * time.Millisecond
)

// AnnouncerOptions tune announcing; zero values take defaults.
type AnnouncerOptions struct {
	// Interval is the republish period, default 3s.
	Interval time.Duration
	// TTL is how long a silent peer stays in the table, default 8s (two missed intervals and
	// some slack): with the sweep every second a dead peer is gone within 9s.
	TTL time.Duration
	// MaxSize is the largest accepted announcement in bytes, default 64 KiB.
	MaxSize int
	// Logger receives the announcer's logs, default slog.Default().
	Logger *slog.Logger
	// FirstSequence is the least sequence to start from; the announcer starts at the larger of
	// it and the current time in nanoseconds. A node keeps one across runs
	// (p2p.ReserveSequences), so a clock stepped back between runs still announces higher
	// sequences than the last run did, which peers would otherwise ignore as old.
	FirstSequence uint64
}

func (o AnnouncerOptions) withDefaults() AnnouncerOptions {
	if o.Interval <= 0 {
		o.Interval = defaultAnnounceInterval
	}
	if o.TTL <= 0 {
		o.TTL = defaultAnnounceTTL
	}
	if o.MaxSize <= 0 {
		o.MaxSize = defaultAnnounceMaxSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Announcer publishes this node's Capability and keeps the PeerTable from others' announcements.
//
// It owns the Topic of its PubSub: one Announcer per PubSub. The PubSub must sign
// messages (the default StrictSign policy), since the validator checks each announcement's
// peer_id against the signed author.
type Announcer struct {
	host  host.Host
	ps    *pubsub.PubSub
	self  func() *pb.Capability
	opts  AnnouncerOptions
	log   *slog.Logger
	table *PeerTable

	topic      *pubsub.Topic
	sub        *pubsub.Subscription
	peerEvents *pubsub.TopicEventHandler
	connEvents event.Subscription

	// seq is the last sequence used. It starts at the process start time in nanoseconds (or
	// FirstSequence, if higher), so a restarted node announces higher sequences than its
	// previous run did.
	seq     atomic.Uint64
	changed chan struct{} // Changed was called
	welcome chan struct{} // a newcomer announced itself
	joined  chan struct{} // a peer subscribed to the topic

	hwMu      sync.Mutex
	highWater map[peer.ID]*sequenceMark

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// sequenceMark is the highest sequence accepted from a peer, when it was accepted, and the
// latest sequences accepted with the pubsub seqno of the message that carried each.
type sequenceMark struct {
	seq    uint64
	at     time.Time
	recent [recentSequences]carriedSequence
	next   int // where the next accepted sequence goes in recent
}

// carriedSequence is a capability sequence and the pubsub seqno of its message.
type carriedSequence struct {
	seq     uint64
	carrier string
}

// NewAnnouncer registers the capability validator on ps, joins and subscribes to
// Topic, and starts announcing self() and collecting peers' announcements until
// Close. self returns this node's capability; the Announcer fills peer_id, links, sequence and
// timestamp itself.
func NewAnnouncer(h host.Host, ps *pubsub.PubSub, self func() *pb.Capability, opts AnnouncerOptions) (*Announcer, error) {
	opts = opts.withDefaults()
	a := &Announcer{
		host:      h,
		ps:        ps,
		self:      self,
		opts:      opts,
		log:       opts.Logger.With("component", "announcer", "topic", Topic),
		table:     NewPeerTable(),
		changed:   make(chan struct{}, 1),
		welcome:   make(chan struct{}, 1),
		joined:    make(chan struct{}, 1),
		highWater: make(map[peer.ID]*sequenceMark),
	}
	a.seq.Store(max(uint64(time.Now().UnixNano()), opts.FirstSequence))
	if err := a.open(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(4)
	go func() { defer a.wg.Done(); a.publishLoop(ctx) }()
	go func() { defer a.wg.Done(); a.receiveLoop(ctx) }()
	go func() { defer a.wg.Done(); a.topicPeerLoop(ctx) }()
	go func() { defer a.wg.Done(); a.connectednessLoop(ctx) }()
	return a, nil
}

// open sets up the validator, topic, subscription and event feeds, undoing what it did when a
// step fails. The validator comes first so that no message reaches the table unchecked.
func (a *Announcer) open() (err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if err := a.ps.RegisterTopicValidator(Topic, a.validate, pubsub.WithValidatorInline(true)); err != nil {
		return fmt.Errorf("register capability validator: %w", err)
	}
	undo = append(undo, func() { _ = a.ps.UnregisterTopicValidator(Topic) })
	if a.topic, err = a.ps.Join(Topic); err != nil {
		return fmt.Errorf("join %s: %w", Topic, err)
	}
	undo = append(undo, func() { _ = a.topic.Close() })
	if a.peerEvents, err = a.topic.EventHandler(); err != nil {
		return fmt.Errorf("watch %s peers: %w", Topic, err)
	}
	undo = append(undo, a.peerEvents.Cancel)
	if a.sub, err = a.topic.Subscribe(pubsub.WithBufferSize(subscriptionBuffer)); err != nil {
		return fmt.Errorf("subscribe %s: %w", Topic, err)
	}
	undo = append(undo, a.sub.Cancel)
	if a.connEvents, err = a.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged)); err != nil {
		return fmt.Errorf("watch connections: %w", err)
	}
	return nil
}

// Changed asks for a republish now: call it when self() would return something new. Calls in
// a burst are coalesced into one announcement.
func (a *Announcer) Changed() {
	a.nudge(a.changed)
}

// nudge sends on a channel of one slot without blocking: a pending signal already says it.
func (a *Announcer) nudge(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Table returns the table of peers heard from.
func (a *Announcer) Table() *PeerTable {
	return a.table
}

// Close stops announcing, leaves the topic and unregisters the validator. The table keeps its
// last contents but is no longer updated.
func (a *Announcer) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.sub.Cancel()
		a.peerEvents.Cancel()
		a.wg.Wait()
		a.closeErr = errors.Join(
			a.connEvents.Close(),
			a.topic.Close(),
			a.ps.UnregisterTopicValidator(Topic),
		)
	})
	return a.closeErr
}

// publishLoop announces at start, every Interval and when asked (Changed, a new topic peer, a
// new peer in the table), and it sweeps the table.
func (a *Announcer) publishLoop(ctx context.Context) {
	republish := time.NewTicker(a.opts.Interval)
	defer republish.Stop()
	// Swept often enough that a silent peer is gone at most a second after its TTL.
	sweep := time.NewTicker(min(max(a.opts.TTL/4, 10*time.Millisecond), time.Second))
	defer sweep.Stop()
	due := time.NewTimer(time.Hour)
	defer due.Stop()
	var plan announceSchedule
	var pending <-chan time.Time // due.C while plan holds a request, else nil
	arm := func() {
		pending = nil
		if at, ok := plan.next(); ok {
			due.Reset(time.Until(at))
			pending = due.C
		}
	}

	a.publish(ctx)
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			a.sweep(time.Now())
			continue
		case <-a.changed:
			plan.requestSoon(last.Add(minPublishGap))
			arm()
			continue
		case <-a.welcome:
			plan.requestSoon(last.Add(welcomeGap))
			arm()
			continue
		case <-a.joined:
			// Now for a router that floods its own messages to every topic peer; again once
			// the newcomer is in the mesh, for one that does not (GossipSub's default).
			plan.requestSoon(last.Add(minPublishGap))
			plan.requestSettled(time.Now().Add(joinSettle))
			arm()
			continue
		case <-republish.C:
		case <-pending:
		}
		a.publish(ctx)
		last = time.Now()
		plan.published(last)
		arm()
		republish.Reset(a.opts.Interval)
	}
}

// announceSchedule holds the publishes requested before the next periodic one: the earliest
// "soon" request, and one for after the mesh has taken in a new topic peer, which an earlier
// publish does not satisfy.
type announceSchedule struct {
	soon, settled time.Time // zero when not requested
}

// requestSoon asks for a publish at at, or earlier if already asked.
func (s *announceSchedule) requestSoon(at time.Time) {
	if s.soon.IsZero() || at.Before(s.soon) {
		s.soon = at
	}
}

// requestSettled asks for a publish no earlier than at: a later join postpones it.
func (s *announceSchedule) requestSettled(at time.Time) {
	if at.After(s.settled) {
		s.settled = at
	}
}

// published records a publish at now, which satisfies every request due by then.
func (s *announceSchedule) published(now time.Time) {
	if !s.soon.After(now) {
		s.soon = time.Time{}
	}
	if !s.settled.After(now) {
		s.settled = time.Time{}
	}
}

// next returns the earliest requested time.
func (s *announceSchedule) next() (time.Time, bool) {
	at := s.soon
	if at.IsZero() || (!s.settled.IsZero() && s.settled.Before(at)) {
		at = s.settled
	}
	return at, !at.IsZero()
}

// publish stamps and publishes one announcement; failures are logged, the next tick retries.
func (a *Announcer) publish(ctx context.Context) {
	c := &pb.Capability{}
	if s := a.self(); s != nil {
		c = proto.Clone(s).(*pb.Capability)
	}
	c.PeerId = a.host.ID().String()
	c.Links = a.links()
	c.Sequence = a.seq.Add(1)
	c.TimestampUnixMs = time.Now().UnixMilli()
	data, err := proto.Marshal(c)
	if err != nil {
		a.log.Error("marshal capability", "err", err)
		return
	}
	if len(data) > a.opts.MaxSize {
		a.log.Error("capability too large to announce", "size", len(data), "max", a.opts.MaxSize)
		return
	}
	if err := a.topic.Publish(ctx, data); err != nil {
		if ctx.Err() == nil {
			a.log.Warn("publish capability", "err", err)
		}
		return
	}
	a.log.Debug("capability published", "sequence", c.Sequence, "size", len(data))
}

// links lists the mesh members this host is connected to, with the round trip the peerstore
// measured: the peers in the table (they announced on the topic, so they hold the swarm key and
// run SYN4PSE), not every libp2p connection (a DHT or relay peer is no member of the mesh). The
// first MaxLinks by peer ID, so that the list, and the announcement, stays the same from one
// republish to the next while the mesh does.
func (a *Announcer) links() []*pb.PeerLink {
	var links []*pb.PeerLink
	for _, e := range a.table.Peers() {
		if len(a.host.Network().ConnsToPeer(e.ID)) == 0 {
			continue
		}
		l := &pb.PeerLink{PeerId: e.ID.String()}
		if rtt := a.host.Peerstore().LatencyEWMA(e.ID); rtt > 0 {
			l.RttMs = float64(rtt.Microseconds()) / 1000
		}
		links = append(links, l)
	}
	slices.SortFunc(links, func(x, y *pb.PeerLink) int { return strings.Compare(x.GetPeerId(), y.GetPeerId()) })
	return links[:min(len(links), MaxLinks)]
}

// sweep drops peers not heard from within TTL and forgets long-silent peers' sequences.
func (a *Announcer) sweep(now time.Time) {
	for _, id := range a.table.Expire(now.Add(-a.opts.TTL)) {
		a.log.Info("peer expired", "peer", id, "ttl", a.opts.TTL)
	}
	a.hwMu.Lock()
	defer a.hwMu.Unlock()
	for id, mark := range a.highWater {
		if now.Sub(mark.at) > highWaterRetention {
			delete(a.highWater, id)
		}
	}
}

// receiveLoop moves validated announcements into the table.
func (a *Announcer) receiveLoop(ctx context.Context) {
	for {
		msg, err := a.sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == a.host.ID() {
			continue // our own announcement
		}
		ann, ok := msg.ValidatorData.(validatedCapability)
		if !ok {
			continue
		}
		id, c := msg.GetFrom(), ann.capability
		_, known := a.table.Get(id)
		connected := a.host.Network().Connectedness(id) == network.Connected
		if a.table.Update(id, c, time.Now(), connected) && !known {
			a.log.Info("peer announced", "peer", id, "node", c.GetNodeName(), "models", len(c.GetModels()))
		}
		if ann.first {
			a.nudge(a.welcome)
		}
	}
}

// topicPeerLoop asks for republishes when a peer subscribes to the topic, so that a newcomer
// learns of this node without waiting for the next Interval.
func (a *Announcer) topicPeerLoop(ctx context.Context) {
	for {
		ev, err := a.peerEvents.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin {
			a.nudge(a.joined)
		}
	}
}

// connectednessLoop drops a peer from the table as soon as the host loses its last connection
// to it; an announcement after a reconnection brings it back.
func (a *Announcer) connectednessLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-a.connEvents.Out():
			if !ok {
				return
			}
			change, ok := ev.(event.EvtPeerConnectednessChanged)
			if !ok {
				continue
			}
			switch change.Connectedness {
			case network.Connected:
				a.table.SetConnected(change.Peer, true)
			case network.Limited:
				a.table.SetConnected(change.Peer, false)
			default:
				if _, known := a.table.Get(change.Peer); known {
					a.table.Remove(change.Peer)
					a.log.Info("peer disconnected", "peer", change.Peer)
				}
			}
		}
	}
}

// validate is the topic validator. Malformed, oversize, spoofed or future-dated announcements
// are rejected, and so are replays that no honest peer sends: an author re-signing a sequence
// it already used, or an announcement older than any honest peer relays. A rejection
// penalises the peer that sent the message (GossipSub peer scoring, see ScoreParams), until it
// is pruned from the mesh and then ignored. What an honest relay may pass on is ignored
// without penalty: an announcement that arrives after a newer one of the same author (gossip
// does not keep order across paths), or one just past maxAnnounceAge. Exact duplicates never
// get here: GossipSub drops a message it has seen by its ID. Accepted announcements carry the
// decoded Capability in ValidatorData, as a validatedCapability.
//
// A rejection must never fall on an honest peer: every other verdict that rejects depends on
// the message alone (and the clock), so every node gives the same, and the one that depends on
// what this node heard before blames only the author, whose own signature proves it guilty. An
// honest relay is never penalised for passing on what it validly accepted.
func (a *Announcer) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	self := a.host.ID()
	if from == self {
		return pubsub.ValidationAccept // our own publish, validated locally
	}
	author := msg.GetFrom()
	if author == self {
		return pubsub.ValidationIgnore // one of our earlier announcements, maybe of a past run
	}
	reject := func(reason string) pubsub.ValidationResult {
		a.log.Debug("announcement rejected", "reason", reason, "author", author, "from", from)
		return pubsub.ValidationReject
	}
	ignore := func(reason string, seq uint64) pubsub.ValidationResult {
		a.log.Debug("announcement ignored", "reason", reason, "author", author, "sequence", seq)
		return pubsub.ValidationIgnore
	}
	if len(msg.GetData()) > a.opts.MaxSize {
		return reject("oversize")
	}
	c := &pb.Capability{}
	if err := proto.Unmarshal(msg.GetData(), c); err != nil {
		return reject("malformed")
	}
	if claimed, err := peer.Decode(c.GetPeerId()); err != nil || claimed != author {
		return reject("peer_id is not the signer")
	}
	if c.GetSequence() == 0 {
		return reject("no sequence")
	}
	if len(c.GetLinks()) > MaxLinks {
		return reject("too many links")
	}
	for _, l := range c.GetLinks() {
		if rtt := l.GetRttMs(); rtt < 0 || math.IsNaN(rtt) || math.IsInf(rtt, 0) {
			return reject("link round trip not a duration")
		}
	}
	now := time.Now()
	stamped := time.UnixMilli(c.GetTimestampUnixMs())
	if stamped.After(now.Add(maxClockSkew)) {
		return reject("dated in the future")
	}
	if stamped.Before(now.Add(-maxAnnounceAge - maxClockSkew)) {
		return reject("replayed: dated long ago")
	}
	if stamped.Before(now.Add(-maxAnnounceAge)) {
		return ignore("too old", c.GetSequence())
	}
	newer, first, reused := a.advance(author, c.GetSequence(), string(msg.GetSeqno()), now)
	if reused && from == author {
		// The author itself sent a sequence it had already announced in another message: an
		// honest author never signs one twice (its sequences grow, even across restarts).
		// Only the author is blamed, as only it can be sure to be guilty: a relay may have
		// seen the second message first, and an older sequence alone may be a late delivery.
		return reject("replayed sequence from its author")
	}
	if !newer {
		return ignore("sequence not newer", c.GetSequence())
	}
	msg.ValidatorData = validatedCapability{capability: c, first: first}
	return pubsub.ValidationAccept
}

// validatedCapability is what the validator hands the receive loop in ValidatorData.
type validatedCapability struct {
	capability *pb.Capability
	first      bool // no earlier announcement of the peer is remembered: a newcomer
}

// advance records seq, carried by the message of pubsub seqno carrier, as id's highest
// sequence if it is higher than any seen before. It says whether it was, whether id had no
// sequence on record, and whether seq is one of id's recent sequences carried by another
// message.
func (a *Announcer) advance(id peer.ID, seq uint64, carrier string, now time.Time) (newer, first, reused bool) {
	a.hwMu.Lock()
	defer a.hwMu.Unlock()
	mark, known := a.highWater[id]
	if known && seq <= mark.seq {
		for _, r := range mark.recent {
			if r.seq == seq && r.carrier != carrier {
				return false, false, true
			}
		}
		return false, false, false
	}
	if !known {
		mark = &sequenceMark{}
		a.highWater[id] = mark
	}
	mark.seq, mark.at = seq, now
	mark.recent[mark.next] = carriedSequence{seq: seq, carrier: carrier}
	mark.next = (mark.next + 1) % recentSequences
	return true, !known, false
}
