package netlab

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// newLab builds a lab of n nodes for the test, or skips where namespaces or TUN are missing.
func newLab(t *testing.T, n int) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("network namespaces unavailable here: %v", err)
	}
	l, err := New("s4p-netlab", n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// echo is a UDP echo server in node's namespace and a client in from's: send sends numbered
// packets, and replies records each echoed number with its round trip.
type echo struct {
	client net.PacketConn
	server net.Addr
	mu     sync.Mutex
	sent   map[uint32]time.Time
	rtt    map[uint32]time.Duration
}

func newEcho(t *testing.T, from, to *Node) *echo {
	t.Helper()
	srv, err := to.ListenPacket("udp4", to.Addr.String()+":7777")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo(buf[:n], addr)
		}
	}()
	cl, err := from.ListenPacket("udp4", from.Addr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	e := &echo{client: cl, server: srv.LocalAddr(), sent: map[uint32]time.Time{}, rtt: map[uint32]time.Duration{}}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := cl.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				seq := binary.BigEndian.Uint32(buf)
				e.mu.Lock()
				e.rtt[seq] = time.Since(e.sent[seq])
				e.mu.Unlock()
			}
		}
	}()
	return e
}

func (e *echo) send(t *testing.T, first, count uint32) {
	t.Helper()
	for seq := first; seq < first+count; seq++ {
		b := make([]byte, 64)
		binary.BigEndian.PutUint32(b, seq)
		e.mu.Lock()
		e.sent[seq] = time.Now()
		e.mu.Unlock()
		if _, err := e.client.WriteTo(b, e.server); err != nil {
			t.Fatal(err)
		}
	}
}

// replies counts the echoed numbers in [first, first+count).
func (e *echo) replies(first, count uint32) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for seq := first; seq < first+count; seq++ {
		if _, ok := e.rtt[seq]; ok {
			n++
		}
	}
	return n
}

// settle waits until the switch has decided the fate of every packet of a round: count
// requests reached or were dropped on their way to server, and each delivered request's reply
// reached or was dropped on its way to client. A liveness bound, not a timing check.
func settle(t *testing.T, client, server *Node, base [4]int64, count int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		toServer := server.Delivered.Load() - base[0] + server.Dropped.Load() - base[1]
		delivered := server.Delivered.Load() - base[0]
		toClient := client.Delivered.Load() - base[2] + client.Dropped.Load() - base[3]
		if toServer >= count && toClient >= delivered {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("switch did not settle: %d of %d requests, %d of %d replies", toServer, count, toClient, delivered)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func counters(client, server *Node) [4]int64 {
	return [4]int64{server.Delivered.Load(), server.Dropped.Load(), client.Delivered.Load(), client.Dropped.Load()}
}

func TestSwitchDelaysDropsAndPartitions(t *testing.T) {
	l := newLab(t, 3)
	a, b := l.Nodes()[0], l.Nodes()[1]
	e := newEcho(t, a, b)
	const n = 200
	delay := 30 * time.Millisecond

	round := func(first uint32, count uint32) int {
		t.Helper()
		base := counters(a, b)
		e.send(t, first, count)
		settle(t, a, b, base, int64(count))
		time.Sleep(10 * time.Millisecond) // the last reply's read, after the switch wrote it
		return e.replies(first, count)
	}

	// No loss: every packet comes back, each after at least the two one-way delays.
	l.SetDelay(delay)
	if got := round(0, n); got != n {
		t.Fatalf("loss 0: %d of %d echoed", got, n)
	}
	e.mu.Lock()
	for seq, rtt := range e.rtt {
		if rtt < 2*delay {
			t.Errorf("packet %d came back after %v, under the round-trip delay %v", seq, rtt, 2*delay)
		}
	}
	e.mu.Unlock()

	// Total loss: nothing.
	l.SetLoss(1)
	if got := round(1000, n); got != 0 {
		t.Fatalf("loss 1: %d of %d echoed", got, n)
	}

	// Half: a round trip survives with probability 1/4; the bounds are over 5 standard
	// deviations wide (sd ≈ 6 for 200 packets).
	l.SetLoss(0.5)
	if got := round(2000, n); got < 20 || got > 80 {
		t.Fatalf("loss 0.5: %d of %d echoed, want about %d", got, n, n/4)
	}

	// A partition drops everything between its sides; healing restores the path.
	l.SetLoss(0)
	l.Partition([]int{1}, []int{2, 3})
	if got := round(3000, n); got != 0 {
		t.Fatalf("partitioned: %d of %d echoed", got, n)
	}
	l.Partition([]int{1, 2}, []int{3})
	if got := round(4000, n); got != n {
		t.Fatalf("same side of the partition: %d of %d echoed", got, n)
	}
	l.Heal()
	if got := round(5000, n); got != n {
		t.Fatalf("healed: %d of %d echoed", got, n)
	}
}

func TestRateCapsDelivery(t *testing.T) {
	l := newLab(t, 2)
	a, b := l.Nodes()[0], l.Nodes()[1]
	e := newEcho(t, a, b)
	// 20 packets of 92 bytes (64 + UDP and IP headers) at 920 B/s take at least 1.9 s to go
	// through: the last reply cannot come back sooner.
	l.SetRate(920)
	start := time.Now()
	base := counters(a, b)
	e.send(t, 0, 20)
	settle(t, a, b, base, 20)
	if got := e.replies(0, 20); got != 20 {
		t.Fatalf("%d of 20 echoed", got)
	}
	if took := time.Since(start); took < 1900*time.Millisecond {
		t.Fatalf("20 paced packets went through in %v", took)
	}
}

func TestCommandRunsInTheNamespace(t *testing.T) {
	l := newLab(t, 2)
	out, err := l.Nodes()[1].Command("ip", "-4", "-o", "addr", "show", "dev", tunName).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.77.0.2/24") {
		t.Fatalf("ip addr in node 2: %v %s", err, out)
	}
	// Nothing routes out: the namespace knows no default route.
	out, err = l.Nodes()[1].Command("ip", "route", "get", "192.0.2.1").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("route to outside the lab: %v %s", err, out)
	}
}

func TestStaleNamespacesAreRemoved(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("network namespaces unavailable here: %v", err)
	}
	// A PID that cannot be running: beyond the kernel's pid_max.
	stale := "s4p-stale-4194305-1"
	if out, err := exec.Command("ip", "netns", "add", stale).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", stale).Run() })
	RemoveStale("s4p-stale")
	if _, err := os.Stat("/run/netns/" + stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale namespace still there: %v", err)
	}
}
