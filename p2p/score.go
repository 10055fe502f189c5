package p2p

import (
	"log/slog"
	"maps"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// GossipSub peer-score thresholds. A peer's score is the sum of its topics' terms (for the
// capability topic: credit for time in the mesh and first deliveries, minus the square of its
// rejected messages; see capability.ScoreParams) and of its behaviour penalty. Below 0 a peer
// is pruned from every mesh at the next heartbeat; below these, more is cut off:
const (
	// GossipThreshold: no gossip (IHAVE/IWANT) to or from the peer.
	GossipThreshold = -50
	// PublishThreshold: this node's own messages are not flooded to the peer.
	PublishThreshold = -100
	// GraylistThreshold: everything the peer sends is ignored.
	GraylistThreshold = -200
	// acceptPXThreshold: peer exchange is taken from peers not in the red. The swarm key
	// already bounds whom a peer record can lead to.
	acceptPXThreshold = 0
	// opportunisticGraftThreshold: when the mesh's median score falls below it, better peers
	// are grafted in; 2 is a couple of first deliveries.
	opportunisticGraftThreshold = 2
	// topicScoreCap bounds the credit a peer can bank across topics (the capability topic
	// gives at most 20), so that good behaviour cannot pay for much bad.
	topicScoreCap = 20
	// behaviourWeight, behaviourThreshold and behaviourDecay penalise protocol abuse (GRAFT
	// during backoff, IWANT promises broken): tolerated up to 10, then squared, forgotten over
	// ten minutes; about 25 in a row reach the graylist. Lenient, since a home node busy
	// generating on every core can be slow to answer IWANTs; a peer that floods GRAFTs still
	// gets there within seconds.
	behaviourWeight    = -1
	behaviourThreshold = 10
	behaviourDecay     = 10 * time.Minute
	// scoreRetention keeps a disconnected peer's score, so that reconnecting does not wipe a
	// penalty.
	scoreRetention = time.Hour
	// scoreInspectPeriod is how often the host copies the scores for PeerScore and logs
	// graylist changes.
	scoreInspectPeriod = time.Second
)

// peerScoreParams are the peer-level score parameters, with topics' own (Config.TopicScores).
// IP colocation is off: several nodes of one home share an address, and tests run many on
// loopback.
func peerScoreParams(topics map[string]*pubsub.TopicScoreParams) *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:                    maps.Clone(topics),
		TopicScoreCap:             topicScoreCap,
		AppSpecificScore:          func(peer.ID) float64 { return 0 },
		BehaviourPenaltyWeight:    behaviourWeight,
		BehaviourPenaltyThreshold: behaviourThreshold,
		BehaviourPenaltyDecay:     pubsub.ScoreParameterDecay(behaviourDecay),
		DecayInterval:             pubsub.DefaultDecayInterval,
		DecayToZero:               pubsub.DefaultDecayToZero,
		RetainScore:               scoreRetention,
	}
}

func peerScoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             GossipThreshold,
		PublishThreshold:            PublishThreshold,
		GraylistThreshold:           GraylistThreshold,
		AcceptPXThreshold:           acceptPXThreshold,
		OpportunisticGraftThreshold: opportunisticGraftThreshold,
	}
}

// peerScores keeps the latest snapshot of GossipSub's peer scores and logs peers crossing the
// graylist threshold. GossipSub calls update on a goroutine of its own every period.
type peerScores struct {
	log *slog.Logger

	mu     sync.Mutex
	latest map[peer.ID]*pubsub.PeerScoreSnapshot
}

// update takes a new snapshot.
func (s *peerScores) update(scores map[peer.ID]*pubsub.PeerScoreSnapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, now := range scores {
		was, known := s.latest[id]
		switch {
		case now.Score < GraylistThreshold && (!known || was.Score >= GraylistThreshold):
			s.log.Warn("peer graylisted: its gossip is ignored until its score recovers", "peer", id,
				"score", now.Score, "rejected_messages", invalidDeliveries(now))
		case now.Score >= GraylistThreshold && known && was.Score < GraylistThreshold:
			s.log.Info("peer no longer graylisted", "peer", id, "score", now.Score)
		}
	}
	s.latest = scores
}

// invalidDeliveries sums a snapshot's rejected messages over its topics (decayed counts).
func invalidDeliveries(s *pubsub.PeerScoreSnapshot) float64 {
	total := 0.0
	for _, t := range s.Topics {
		total += t.InvalidMessageDeliveries
	}
	return total
}

// PeerScore returns GossipSub's score of a peer and its parts as of the latest snapshot (taken
// every second), and false for a peer it has no record of.
func (h *Host) PeerScore(id peer.ID) (pubsub.PeerScoreSnapshot, bool) {
	h.scores.mu.Lock()
	defer h.scores.mu.Unlock()
	s, ok := h.scores.latest[id]
	if !ok {
		return pubsub.PeerScoreSnapshot{}, false
	}
	return *s, true
}
