package node_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/p2p"
	"github.com/ekisa-team/syn4pse/p2p/rpc"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// TestModelDigestProvidedInDHT: a node hashes its model file, announces the digest and provides
// it in the DHT, where a peer outside any gossip finds it.
func TestModelDigestProvidedInDHT(t *testing.T) {
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := node.Start(t.Context(), meshConfig(t, key, "a", nil, tinyDecl("tiny")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(t.Context()) })
	conn := grpcConn(t, a)

	b, err := os.ReadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	want := "sha256:" + hex.EncodeToString(sum[:])
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := pb.NewModelServiceClient(conn).ListModels(t.Context(), &pb.ListModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if d := list.GetModels()[0].GetDigest(); d != "" {
			if d != want {
				t.Fatalf("digest %s, want %s", d, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no digest after a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}

	st, err := pb.NewNodeServiceClient(conn).MeshStatus(t.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seeker, err := p2p.New(t.Context(), p2p.Config{DataDir: t.TempDir(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		SwarmKey: &key, Bootstrap: st.GetListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seeker.Close() })
	for {
		providers, err := seeker.Providers(t.Context(), want, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(providers) == 1 && providers[0].ID.String() == st.GetPeerId() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("providers of %s: %v", want, providers)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRemoteControlNeedsPermission: a peer may load models only as models.allow_remote says;
// local clients always may.
func TestRemoteControlNeedsPermission(t *testing.T) {
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		allow []string
		want  codes.Code
	}{{nil, codes.PermissionDenied}, {[]string{"load", "unload"}, codes.OK}} {
		cfg := meshConfig(t, key, "a", nil, tinyDecl("tiny"))
		cfg.Lifecycle.AllowRemote = tt.allow
		a, err := node.Start(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Shutdown(t.Context()) })
		conn := dialAsPeer(t, a, key)
		_, err = pb.NewModelServiceClient(conn).LoadModel(t.Context(), &pb.LoadModelRequest{Name: "tiny"})
		if status.Code(err) != tt.want {
			t.Fatalf("allow_remote %v: remote load: %v, want %v", tt.allow, err, tt.want)
		}
		if _, err := pb.NewModelServiceClient(grpcConn(t, a)).LoadModel(t.Context(), &pb.LoadModelRequest{Name: "tiny"}); err != nil {
			t.Fatalf("local load: %v", err)
		}
		// The configuration is for the node's own clients, whatever allow_remote says.
		if _, err := pb.NewNodeServiceClient(conn).GetConfig(t.Context(), &pb.GetConfigRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a peer read the configuration: %v", err)
		}
		if _, err := pb.NewNodeServiceClient(grpcConn(t, a)).GetConfig(t.Context(), &pb.GetConfigRequest{}); err != nil {
			t.Fatalf("local GetConfig: %v", err)
		}
	}
}

// dialAsPeer connects a fresh libp2p host with the mesh's swarm key to node a and returns a
// gRPC connection to a over the mesh: calls on it arrive at a as a peer's.
func dialAsPeer(t *testing.T, a *node.Node, key p2p.SwarmKey) grpc.ClientConnInterface {
	t.Helper()
	st, err := pb.NewNodeServiceClient(grpcConn(t, a)).MeshStatus(t.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	peerHost, err := p2p.New(t.Context(), p2p.Config{DataDir: t.TempDir(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		SwarmKey: &key, Bootstrap: st.GetListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peerHost.Close() })
	clients := rpc.NewPeerClients(peerHost.Libp2p())
	t.Cleanup(func() { clients.Close() })
	aID, err := peer.Decode(st.GetPeerId())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clients.Conn(t.Context(), aID)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// startMeshPair starts node a with aModels and node b, with bModels, joined to a's mesh; both
// stop when the test ends. It returns them with the mesh's swarm key and a's listen addresses.
func startMeshPair(t *testing.T, aModels []config.Model, bModels ...config.Model) (a, b *node.Node, key p2p.SwarmKey, aAddrs []string) {
	t.Helper()
	key, err := p2p.GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	if a, err = node.Start(t.Context(), meshConfig(t, key, "a", nil, aModels...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(context.WithoutCancel(t.Context())) })
	st, err := pb.NewNodeServiceClient(grpcConn(t, a)).MeshStatus(t.Context(), &pb.MeshStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err = node.Start(t.Context(), meshConfig(t, key, "b", st.GetListenAddrs(), bModels...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(context.WithoutCancel(t.Context())) })
	return a, b, key, st.GetListenAddrs()
}

// waitForPeerModel waits, for at most a minute, until the node on conn sees its one peer
// announce its one model.
func waitForPeerModel(t *testing.T, conn grpc.ClientConnInterface) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		peers, _ := pb.NewNodeServiceClient(conn).ListPeers(t.Context(), &pb.ListPeersRequest{})
		if ps := peers.GetPeers(); len(ps) == 1 && len(ps[0].GetCapability().GetModels()) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer's model never showed: %v", peers)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
