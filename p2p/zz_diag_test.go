package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

type zzTracer struct {
	mu    sync.Mutex
	start time.Time
	ev    []string
}

func (z *zzTracer) add(f string, a ...any) {
	z.mu.Lock()
	z.ev = append(z.ev, fmt.Sprintf("%v ", time.Since(z.start).Round(time.Millisecond))+fmt.Sprintf(f, a...))
	z.mu.Unlock()
}
func (z *zzTracer) AddPeer(p peer.ID, proto protocol.ID)             { z.add("addpeer %s %s", p.ShortString(), proto) }
func (z *zzTracer) RemovePeer(p peer.ID)                             {}
func (z *zzTracer) OnNewOutboundStream(p peer.ID, proto protocol.ID) { z.add("outstream %s", p.ShortString()) }
func (z *zzTracer) OnClosedOutboundStream(p peer.ID)                 {}
func (z *zzTracer) Join(topic string)                                {}
func (z *zzTracer) Leave(topic string)                               {}
func (z *zzTracer) Graft(p peer.ID, topic string)                    { z.add("graft %s", p.ShortString()) }
func (z *zzTracer) Prune(p peer.ID, topic string)                    {}
func (z *zzTracer) ValidateMessage(msg *pubsub.Message)              { z.add("validate") }
func (z *zzTracer) DeliverMessage(msg *pubsub.Message)               { z.add("deliver") }
func (z *zzTracer) RejectMessage(msg *pubsub.Message, reason string) { z.add("reject %s", reason) }
func (z *zzTracer) DuplicateMessage(msg *pubsub.Message)             {}
func (z *zzTracer) ThrottlePeer(p peer.ID)                           { z.add("throttle") }
func (z *zzTracer) RecvRPC(rpc *pubsub.RPC) {
	z.add("recv from %s pub %d subs %d ctl %v", rpc.From().ShortString(), len(rpc.GetPublish()), len(rpc.GetSubscriptions()), rpc.GetControl() != nil)
}
func (z *zzTracer) SendRPC(rpc *pubsub.RPC, p peer.ID) {
	z.add("send to %s pub %d subs %d", p.ShortString(), len(rpc.GetPublish()), len(rpc.GetSubscriptions()))
}
func (z *zzTracer) SendRPCCompleted(rpc *pubsub.RPC, p peer.ID, d time.Duration) {}
func (z *zzTracer) DropRPC(rpc *pubsub.RPC, p peer.ID)                          { z.add("droprpc %s", p.ShortString()) }
func (z *zzTracer) UndeliverableMessage(msg *pubsub.Message)                    { z.add("undeliverable") }

func TestZZDiag(t *testing.T) {
	n := 50
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nodes := make([]*gossipTestNode, n)
	tr := &zzTracer{}
	for i := range nodes {
		h, _ := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		t.Cleanup(func() { h.Close() })
		opts := []pubsub.Option{pubsub.WithPeerOutboundQueueSize(1024), pubsub.WithValidateQueueSize(1024)}
		if i == 1 {
			opts = append(opts, pubsub.WithRawTracer(tr))
		}
		ps, _ := pubsub.NewGossipSub(ctx, h, opts...)
		nodes[i] = &gossipTestNode{host: h, ps: ps, log: &gossipTestLog{counts: map[string]int{}}}
		nodes[i].setModels("m")
	}
	startGossipTestAnnouncers(t, nodes, AnnouncerOptions{})
	edges := gossipScaleEdges(n, rand.New(rand.NewPCG(1, uint64(n))))
	tr.mu.Lock(); tr.start = time.Now(); tr.mu.Unlock()
	for _, e := range edges {
		connectGossipTestHosts(t, nodes[e[0]].host, nodes[e[1]].host)
	}
	t.Logf("node0 %s node2 %s", nodes[0].host.ID().ShortString(), nodes[2].host.ID().ShortString())
	time.Sleep(2 * time.Second)
	t.Logf("node1 table %d", nodes[1].ann.Table().Len())
	tr.mu.Lock()
	for _, e := range tr.ev { t.Log(e) }
	tr.mu.Unlock()
}
