package capability

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// Score weights of Topic, chosen for meshes of 3 to 20 nodes that each announce every few
// seconds. The peer-level thresholds they play against are in package p2p (the host that runs
// GossipSub); with those, a peer is graylisted by its fifth rejected announcement however much
// credit it earned before:
//
//	credit:   at most TimeInMeshMax + FirstDeliveriesMax = 20
//	penalty:  InvalidWeight × rejected² = -10, -40, -90, -160, -250 after 1..5 rejections
//	score:    the sum; p2p's thresholds are gossip -50, publish -100, graylist -200
//
// so one stray rejection (a clock that jumped, a relay on another version) costs a peer with
// credit nothing but part of it (a peer with none is left out of the mesh until the penalty
// decays, its messages still taken), three take it off gossip, and five (a peer sending
// garbage, spoofs or replays) graylist it: everything it sends is ignored until the penalty has
// decayed back above the threshold: 84 s for five (4.98 decaying to √20 at 0.128% a second,
// with no credit left).
const (
	// TimeInMeshMax is the most credit a peer earns by staying in the mesh: reached after an
	// hour.
	TimeInMeshMax = 10.0
	// FirstDeliveriesMax is the most credit a peer earns by being the first to deliver valid
	// announcements: reached after about ten (an author is the first to deliver its own).
	FirstDeliveriesMax = 10.0
	// InvalidWeight is the weight of the square of a peer's rejected announcements.
	InvalidWeight = -10.0
	// invalidDecay is how long a rejection counts: down to 1% in an hour. A peer graylisted
	// for five rejections is heard again after a minute and a half, and graylisted again by
	// its next rejection, for longer; one that sent many before the graylist took hold waits
	// longer.
	invalidDecay = time.Hour
	// firstDeliveriesDecay is how long a first delivery counts, in announce intervals.
	firstDeliveriesDecay = 100
	// timeInMeshFull is the time in the mesh that earns TimeInMeshMax.
	timeInMeshFull = time.Hour
)

// ScoreParams are GossipSub's peer-score parameters for Topic, for a mesh whose nodes
// announce every interval (p2p.announce_interval). Hand them to the host's GossipSub
// (p2p.Config.TopicScores) so that peers sending rejected announcements (validate) are pruned
// from the mesh and then graylisted.
//
// The mesh-delivery terms (P3, P3b) are off: announcements are few and a peer in a small mesh
// is often not the first to deliver, so a delivery quota would prune honest peers.
func ScoreParams(interval time.Duration) *pubsub.TopicScoreParams {
	if interval <= 0 {
		interval = defaultAnnounceInterval
	}
	quanta := float64(timeInMeshFull / interval)
	return &pubsub.TopicScoreParams{
		TopicWeight: 1,

		TimeInMeshWeight:  TimeInMeshMax / quanta,
		TimeInMeshQuantum: interval,
		TimeInMeshCap:     quanta,

		FirstMessageDeliveriesWeight: 1,
		FirstMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(firstDeliveriesDecay * interval),
		FirstMessageDeliveriesCap:    FirstDeliveriesMax,

		InvalidMessageDeliveriesWeight: InvalidWeight,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(invalidDecay),
	}
}
