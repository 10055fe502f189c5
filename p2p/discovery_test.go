package p2p

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestDHTDiscovery(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three hosts and a DHT lookup")
	}
	key := newTestKey(t)
	a := startTestHost(t, Config{SwarmKey: key})
	b := startTestHost(t, Config{SwarmKey: key, Bootstrap: addrStrings(a)})
	start := time.Now()
	c := startTestHost(t, Config{SwarmKey: key, Bootstrap: addrStrings(a)})
	if !connected(b, a) || !connected(c, a) {
		t.Fatal("New returned before connecting to its bootstrap peer")
	}
	waitUntil(t, 10*time.Second, "a's routing table holds b and c's holds a", func() bool {
		return a.DHT().RoutingTable().Find(b.ID()) != "" && c.DHT().RoutingTable().Find(a.ID()) != ""
	})
	// The DHT bootstrap's lookups usually reach b by themselves.
	deadline := time.Now().Add(3 * time.Second)
	for !connected(c, b) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if connected(c, b) {
		t.Logf("DHT discovery: c started and reached b through a's DHT in %v", time.Since(start))
	}

	// Whether or not it did, forget b and look it up explicitly: only a can tell where it is.
	_ = c.Libp2p().Network().ClosePeer(b.ID())
	c.Libp2p().Peerstore().ClearAddrs(b.ID())
	start = time.Now()
	var found peer.AddrInfo
	waitUntil(t, 10*time.Second, "c finds b through the DHT", func() bool {
		var err error
		found, err = c.DHT().FindPeer(t.Context(), b.ID())
		return err == nil && len(found.Addrs) > 0
	})
	if err := c.Connect(t.Context(), found); err != nil {
		t.Fatalf("connect to the peer the DHT found: %v", err)
	}
	t.Logf("DHT FindPeer through a, then connect: %v", time.Since(start))
}

func TestRememberedPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: restarts a host")
	}
	key := newTestKey(t)
	a := startTestHost(t, Config{SwarmKey: key})
	bDir := t.TempDir()
	b, err := New(t.Context(), Config{SwarmKey: key, DataDir: bDir, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		DialTimeout: testDialTimeout, Bootstrap: addrStrings(a)})
	if err != nil {
		t.Fatal(err)
	}
	bID := b.ID()
	waitUntil(t, 5*time.Second, "b learns a's listen addresses", func() bool {
		return len(b.Libp2p().Peerstore().Addrs(a.ID())) > 0 && connected(a, b)
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(bDir, PeersFile))
	if err != nil {
		t.Fatal(err)
	}
	var file peersFile
	if err := json.Unmarshal(data, &file); err != nil || len(file.Peers) != 1 || file.Peers[0].ID != a.ID().String() {
		t.Fatalf("peers.json %s (%v): want only a", data, err)
	}
	waitUntil(t, 5*time.Second, "a sees b leave", func() bool { return !connected(a, b) })

	start := time.Now()
	again := startTestHost(t, Config{SwarmKey: key, DataDir: bDir}) // no bootstrap
	if again.ID() != bID {
		t.Fatalf("restarted with peer ID %s, want %s", again.ID(), bID)
	}
	waitUntil(t, 5*time.Second, "the restarted host reconnects to a", func() bool { return connected(again, a) })
	t.Logf("restarted host reconnected to a remembered peer in %v", time.Since(start))
}

func TestPeerBookUnreadable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, PeersFile)
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A broken cache is ignored, then replaced by the next save.
	h := startTestHost(t, Config{SwarmKey: newTestKey(t), DataDir: dir})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var file peersFile
	if err := json.Unmarshal(data, &file); err != nil || file.Version != 1 {
		t.Fatalf("peers.json not rewritten: %s (%v)", data, err)
	}
}

// mdnsChildEnv tells a test binary started inside a network namespace to run the mDNS hosts.
const mdnsChildEnv = "SYN4PSE_P2P_MDNS_CHILD"

// TestMDNS runs two hosts with mDNS in a network namespace of their own, so the multicast
// stays off the machine's networks: the test re-executes itself there.
func TestMDNS(t *testing.T) {
	if os.Getenv(mdnsChildEnv) != "" {
		runMDNSHosts(t)
		return
	}
	if testing.Short() {
		t.Skip("slow: creates a network namespace")
	}
	if os.Geteuid() != 0 {
		t.Skip("mDNS test needs root to create a network namespace (ip netns add); skipped")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("syn4pse-mdns-%d", os.Getpid())
	ip := func(args ...string) error {
		// Not t.Context(): the namespace is removed at cleanup, after that context ends.
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := ip("netns", "add", ns); err != nil {
		t.Skipf("cannot create a network namespace, mDNS test skipped: %v", err)
	}
	t.Cleanup(func() {
		if err := ip("netns", "del", ns); err != nil {
			t.Errorf("remove network namespace: %v", err)
		}
	})
	// A fresh namespace has a loopback without multicast: mDNS needs both.
	if err := ip("netns", "exec", ns, "ip", "link", "set", "lo", "up", "multicast", "on"); err != nil {
		t.Skipf("mDNS test skipped: %v", err)
	}
	if err := ip("netns", "exec", ns, "ip", "route", "add", "224.0.0.0/4", "dev", "lo"); err != nil {
		t.Skipf("mDNS test skipped: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", ns, exe, "-test.run", "^TestMDNS$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), mdnsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", bytes.TrimSpace(out))
	if err != nil {
		t.Fatalf("mDNS hosts failed: %v", err)
	}
	if !bytes.Contains(out, []byte("found each other by mDNS")) {
		t.Fatal("the child did not run the mDNS hosts")
	}
}

// runMDNSHosts is the child's part: two hosts that know nothing of each other but mDNS.
func runMDNSHosts(t *testing.T) {
	key := newTestKey(t)
	start := time.Now()
	a := startTestHost(t, Config{SwarmKey: key, MDNS: true})
	b := startTestHost(t, Config{SwarmKey: key, MDNS: true})
	waitUntil(t, 15*time.Second, "a and b find each other by mDNS", func() bool { return connected(a, b) && connected(b, a) })
	t.Logf("found each other by mDNS in %v (both hosts started at 0)", time.Since(start))

	// NAT traversal and relays probe the network (UPnP, NAT-PMP), so they run here too.
	traversal := startTestHost(t, Config{SwarmKey: key, MDNS: true, NAT: true, Relay: true})
	other := startTestHost(t, Config{SwarmKey: newTestKey(t), MDNS: true}) // another mesh on the LAN
	waitUntil(t, 15*time.Second, "a host with NAT and relays on joins by mDNS", func() bool { return connected(traversal, a) && connected(traversal, b) })
	time.Sleep(200 * time.Millisecond) // mDNS has announced other by now too
	if connected(a, other) || connected(b, other) || connected(traversal, other) {
		t.Fatal("joined a host of another mesh found by mDNS")
	}
}
