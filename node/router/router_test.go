package router

import (
	"errors"
	"testing"
	"time"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// table is an in-memory peer view: the router's input data, not a stand-in for a service.
type table []Candidate

func (t table) WithModel(string) []Candidate { return append([]Candidate(nil), t...) }
func (t table) Lookup(node string) (Candidate, bool) {
	for _, c := range t {
		if c.Peer == node || c.Name == node {
			return c, true
		}
	}
	return Candidate{}, false
}
func (t table) Models() []string {
	var names []string
	for range t {
		names = append(names, "m")
	}
	return names
}
func (table) RecordFailure(string) {}
func (table) RecordSuccess(string) {}

func TestPlan(t *testing.T) {
	loadedIdle := Candidate{Peer: "A", Name: "alpha", Loaded: true, FreeSlots: 1}
	loadedBusy := Candidate{Peer: "B", Loaded: true, FreeSlots: 0, QueueDepth: 3}
	onDisk := Candidate{Peer: "C", Loaded: false, FreeSlots: 2}
	failing := Candidate{Peer: "D", Loaded: true, FreeSlots: 2, RecentFailures: 2}
	far := Candidate{Peer: "E", Loaded: true, FreeSlots: 1, RTT: 400 * time.Millisecond}
	const big = 8 << 30
	cpuBig := Candidate{Peer: "F", Loaded: true, FreeSlots: 4, ModelBytes: big}
	gpuBig := Candidate{Peer: "G", Loaded: true, FreeSlots: 1, ModelBytes: big, GPUBytes: 24 << 30}
	smallGPU := Candidate{Peer: "H", Loaded: true, FreeSlots: 1, ModelBytes: big, GPUBytes: 4 << 30}
	gpuSmallModel := Candidate{Peer: "I", Loaded: true, FreeSlots: 1, ModelBytes: 100 << 20, GPUBytes: 24 << 30}
	cpuSmallModel := Candidate{Peer: "J", Loaded: true, FreeSlots: 3, ModelBytes: 100 << 20}
	gpuOnDisk := Candidate{Peer: "K", FreeSlots: 1, ModelBytes: big, GPUBytes: 24 << 30}

	tests := []struct {
		name    string
		local   LocalModel
		peers   table
		routing *pb.Routing
		want    []string // "" is this node
		wantErr bool
	}{
		{"loaded here with a free slot", LocalModel{Declared: true, Loaded: true, FreeSlots: 1}, table{loadedIdle}, nil, []string{""}, false},
		{"busy here, idle peer first", LocalModel{Declared: true, Loaded: true}, table{loadedIdle}, nil, []string{"A", ""}, false},
		{"busy here beats a peer with it on disk", LocalModel{Declared: true, Loaded: true}, table{onDisk}, nil, []string{"", "C"}, false},
		{"not here: loaded beats on disk, free beats busy", LocalModel{}, table{onDisk, loadedBusy, loadedIdle}, nil, []string{"A", "B", "C"}, false},
		{"recent failures sink a peer", LocalModel{}, table{failing, loadedBusy}, nil, []string{"B", "D"}, false},
		{"round trip breaks ties", LocalModel{}, table{far, loadedIdle}, nil, []string{"A", "E"}, false},
		{"a large model prefers a GPU that holds it", LocalModel{}, table{cpuBig, smallGPU, gpuBig}, nil, []string{"G", "F", "H"}, false},
		{"a small model gains nothing from a GPU", LocalModel{}, table{gpuSmallModel, cpuSmallModel}, nil, []string{"J", "I"}, false},
		{"loaded on a CPU beats a GPU that must load it", LocalModel{}, table{gpuOnDisk, cpuBig}, nil, []string{"F", "K"}, false},
		{"not here, on disk here comes after loaded peers", LocalModel{Declared: true}, table{loadedIdle}, nil, []string{"A", ""}, false},
		{"nowhere", LocalModel{}, table{}, nil, nil, true},
		{"broken here, served by a peer", LocalModel{Declared: true, Unavailable: true}, table{onDisk}, nil, []string{"C"}, false},
		{"broken here and nowhere else: here, for the reason", LocalModel{Declared: true, Unavailable: true}, table{}, nil, []string{""}, false},
		{"local only", LocalModel{Declared: true}, table{loadedIdle}, &pb.Routing{LocalOnly: true}, []string{""}, false},
		{"local only, not here", LocalModel{}, table{loadedIdle}, &pb.Routing{LocalOnly: true}, nil, true},
		{"forwarded once already", LocalModel{Declared: true}, table{loadedIdle}, &pb.Routing{Hops: 1}, []string{""}, false},
		{"pinned by name", LocalModel{Declared: true, Loaded: true, FreeSlots: 1}, table{loadedIdle, onDisk}, &pb.Routing{Node: "alpha"}, []string{"A"}, false},
		{"pinned to self", LocalModel{Declared: true}, table{loadedIdle}, &pb.Routing{Node: "self"}, []string{""}, false},
		{"pinned to a stranger", LocalModel{Declared: true}, table{loadedIdle}, &pb.Routing{Node: "Z"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Router{Self: "self", MaxHops: 1, Local: func(string) LocalModel { return tt.local }, Peers: tt.peers}
			targets, err := r.plan("m", tt.routing)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			var got []string
			for _, tg := range targets {
				got = append(got, tg.peer.Peer)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("plan = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("plan = %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestNotFoundSaysNoNodeServesIt(t *testing.T) {
	r := &Router{Self: "self", MaxHops: 1, Local: func(string) LocalModel { return LocalModel{} }, Peers: table{},
		LocalModels: func() []string { return []string{"tiny"} }}
	_, err := r.plan("llama-70b", nil)
	if !errors.Is(err, ErrNoNode) || err.Error() != `no node serves the model: "llama-70b" is not a model of any node of the mesh; available: tiny` {
		t.Fatalf("err = %v", err)
	}
}
