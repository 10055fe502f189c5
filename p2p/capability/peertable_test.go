package capability

import (
	"cmp"
	"crypto/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// newPeerTableTestID returns a fresh peer ID.
func newPeerTableTestID(t testing.TB) peer.ID {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// peerTableTestCapability returns a capability of id at seq announcing the models.
func peerTableTestCapability(id peer.ID, seq uint64, models ...string) *pb.Capability {
	c := &pb.Capability{PeerId: id.String(), Sequence: seq}
	for _, m := range models {
		c.Models = append(c.Models, &pb.ModelCapability{Name: m})
	}
	return c
}

func TestPeerTableUpdate(t *testing.T) {
	id := newPeerTableTestID(t)
	now := time.Now()
	tests := []struct {
		name       string
		seq        uint64
		wantChange bool
		wantSeq    uint64
	}{
		{"first announcement", 10, true, 10},
		{"newer sequence", 11, true, 11},
		{"same sequence", 11, false, 11},
		{"older sequence", 5, false, 11},
		{"much newer", 1 << 60, true, 1 << 60},
	}
	table := NewPeerTable()
	for _, tt := range tests { // in order: each case builds on the table the previous left
		changed := table.Update(id, peerTableTestCapability(id, tt.seq, "m"), now, true)
		if changed != tt.wantChange {
			t.Errorf("%s: Update changed = %v, want %v", tt.name, changed, tt.wantChange)
		}
		e, ok := table.Get(id)
		if !ok || e.Capability.GetSequence() != tt.wantSeq {
			t.Errorf("%s: entry = %+v (found %v), want sequence %d", tt.name, e, ok, tt.wantSeq)
		}
	}
}

func TestPeerTableQueries(t *testing.T) {
	table := NewPeerTable()
	now := time.Now()
	ids := make([]peer.ID, 4)
	for i := range ids {
		ids[i] = newPeerTableTestID(t)
	}
	table.Update(ids[0], peerTableTestCapability(ids[0], 1, "llama", "bert"), now, true)
	table.Update(ids[1], peerTableTestCapability(ids[1], 1, "llama"), now, false)
	table.Update(ids[2], peerTableTestCapability(ids[2], 1, "whisper"), now, true)
	table.Update(ids[3], peerTableTestCapability(ids[3], 1), now, true)

	peers := table.Peers()
	if len(peers) != 4 || table.Len() != 4 {
		t.Fatalf("Peers() has %d entries, Len() = %d, want 4", len(peers), table.Len())
	}
	if !slices.IsSortedFunc(peers, func(a, b PeerEntry) int { return cmp.Compare(a.ID, b.ID) }) {
		t.Errorf("Peers() not sorted by ID")
	}

	tests := []struct {
		model string
		want  []peer.ID
	}{
		{"llama", []peer.ID{ids[0], ids[1]}},
		{"bert", []peer.ID{ids[0]}},
		{"whisper", []peer.ID{ids[2]}},
		{"absent", nil},
	}
	for _, tt := range tests {
		var got []peer.ID
		for _, e := range table.WithModel(tt.model) {
			got = append(got, e.ID)
			if e.Model(tt.model).GetName() != tt.model {
				t.Errorf("WithModel(%q) returned %s without the model", tt.model, e.ID)
			}
		}
		want := slices.Clone(tt.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("WithModel(%q) = %v, want %v", tt.model, got, want)
		}
	}

	table.Remove(ids[2])
	if _, ok := table.Get(ids[2]); ok {
		t.Errorf("Get after Remove found the peer")
	}
	if got := table.WithModel("whisper"); len(got) != 0 {
		t.Errorf("WithModel(whisper) after Remove = %v", got)
	}
	table.Remove(ids[2]) // removing twice is harmless
}

func TestPeerTableRouterStats(t *testing.T) {
	table := NewPeerTable()
	id := newPeerTableTestID(t)
	stranger := newPeerTableTestID(t)
	table.Update(id, peerTableTestCapability(id, 1, "m"), time.Now(), true)

	table.RecordFailure(id)
	table.RecordFailure(id)
	table.RecordFailure(stranger) // not in the table: ignored
	table.SetConnected(id, false)
	table.Update(id, peerTableTestCapability(id, 2, "m"), time.Now(), true)

	e, _ := table.Get(id)
	if e.RecentFailures != 2 || !e.Connected {
		t.Errorf("after update: failures %d, connected %v; want 2, true (stats survive announcements)",
			e.RecentFailures, e.Connected)
	}
	if _, ok := table.Get(stranger); ok {
		t.Errorf("RecordFailure added an unknown peer")
	}
	table.RecordSuccess(id)
	if e, _ := table.Get(id); e.RecentFailures != 0 {
		t.Errorf("RecentFailures after success = %d, want 0", e.RecentFailures)
	}
}

func TestPeerTableExpire(t *testing.T) {
	table := NewPeerTable()
	now := time.Now()
	old, fresh := newPeerTableTestID(t), newPeerTableTestID(t)
	table.Update(old, peerTableTestCapability(old, 1), now.Add(-time.Minute), true)
	table.Update(fresh, peerTableTestCapability(fresh, 1), now, true)

	gone := table.Expire(now.Add(-30 * time.Second))
	if !slices.Equal(gone, []peer.ID{old}) {
		t.Errorf("Expire = %v, want [%s]", gone, old)
	}
	if _, ok := table.Get(fresh); !ok {
		t.Errorf("fresh peer expired")
	}
	// An expired peer that announces again comes back, whatever its sequence was.
	if !table.Update(old, peerTableTestCapability(old, 1), now, true) {
		t.Errorf("expired peer not re-added")
	}
}

func TestPeerTableSubscribe(t *testing.T) {
	table := NewPeerTable()
	id := newPeerTableTestID(t)
	changes, cancel := table.Subscribe()

	table.Update(id, peerTableTestCapability(id, 1), time.Now(), true)
	table.Update(id, peerTableTestCapability(id, 2), time.Now(), true)
	select {
	case <-changes:
	default:
		t.Fatal("no notification after Update")
	}
	select {
	case <-changes:
		t.Fatal("two updates gave two notifications, want them coalesced")
	default:
	}
	table.Update(id, peerTableTestCapability(id, 2), time.Now(), true) // no change
	table.RecordSuccess(id)                                            // no change
	select {
	case <-changes:
		t.Fatal("notification without a change")
	default:
	}
	table.Remove(id)
	if _, ok := <-changes; !ok {
		t.Fatal("channel closed before cancel")
	}
	cancel()
	cancel() // idempotent
	if _, ok := <-changes; ok {
		t.Fatal("channel open after cancel")
	}
	table.Update(id, peerTableTestCapability(id, 3), time.Now(), true) // no send on a closed channel
}

// TestPeerTableConcurrent is for -race: writers, readers and subscribers at once.
func TestPeerTableConcurrent(t *testing.T) {
	table := NewPeerTable()
	ids := make([]peer.ID, 8)
	for i := range ids {
		ids[i] = newPeerTableTestID(t)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				id := ids[(i+w)%len(ids)]
				switch i % 6 {
				case 0:
					table.Update(id, peerTableTestCapability(id, uint64(i), "m"), time.Now(), true)
				case 1:
					table.RecordFailure(id)
				case 2:
					table.RecordSuccess(id)
				case 3:
					_ = table.WithModel("m")
				case 4:
					table.Expire(time.Now().Add(-time.Millisecond))
				case 5:
					ch, cancel := table.Subscribe()
					select {
					case <-ch:
					default:
					}
					cancel()
				}
			}
		})
	}
	wg.Wait()
}
