// Package netlab builds a small network of Linux network namespaces for chaos tests: each node
// is a namespace with loopback and one TUN device, syn0, addressed 10.77.0.N/24, and the lab's
// process holds every TUN and switches the IPv4 packets between them in userspace, where it
// delays them, drops a share of them at random, throttles them to a rate, or drops everything
// between two sides of a partition. Processes run inside a node's namespace (Command), and the
// test itself opens sockets there (Dial, ListenPacket).
//
// The switch is in userspace because the kernels our tests run on may lack the netem qdisc
// (and cannot load modules); a TUN device needs only /dev/net/tun. Nothing routes out of the
// namespaces: each knows only its loopback and 10.77.0.0/24, and the switch drops every
// packet not addressed to another node of the lab.
//
// Namespaces are named PREFIX-PID-N; New first removes those a crashed earlier run (a PID no
// longer alive) left behind, and Close removes its own.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Subnet is the nodes' network: node i (from 1) is 10.77.0.i.
var Subnet = netip.MustParsePrefix("10.77.0.0/24")

// tunName is the TUN device's name inside each namespace.
const tunName = "syn0"

// queueLen bounds the packets waiting for delivery to one node; beyond it they are dropped,
// as a full router queue would.
const queueLen = 8192

// Available says why a lab cannot be built here (not root, no `ip netns`, no TUN), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces and TUN devices)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("needs the ip command (iproute2)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("needs /dev/net/tun: %w", err)
	}
	name := fmt.Sprintf("s4p-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add is not permitted: %v: %s", err, strings.TrimSpace(string(out)))
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	return inNamespace(name, func() error {
		f, err := openTUN()
		if err != nil {
			return err
		}
		return f.Close()
	})
}

// Lab is a set of namespaces joined by the userspace switch. Its settings may change while
// traffic flows; they apply to packets entering the switch from then on.
type Lab struct {
	prefix string
	nodes  []*Node

	mu    sync.Mutex
	delay time.Duration
	loss  float64
	rate  int // bytes per second into each node; 0 = unlimited
	side  map[int]int
	rng   *rand.Rand

	readers sync.WaitGroup
	writers sync.WaitGroup
	closed  atomic.Bool
}

// Node is one namespace of a lab.
type Node struct {
	// Namespace is the network namespace's name (for `ip netns exec`).
	Namespace string
	// Addr is the node's address on syn0.
	Addr netip.Addr

	index int
	lab   *Lab
	tun   *os.File
	queue chan packet

	// Delivered and Dropped count the packets (and Bytes the bytes) the switch handed to this
	// node or dropped on their way to it.
	Delivered, Dropped, Bytes atomic.Int64
}

type packet struct {
	at   time.Time
	data []byte
}

// New builds n namespaces named prefix-PID-1..n, joined by the switch, with no delay or loss.
func New(prefix string, n int) (*Lab, error) {
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("netlab: %d nodes: want 1 to 250", n)
	}
	RemoveStale(prefix)
	l := &Lab{prefix: prefix, side: map[int]int{}, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	for i := 1; i <= n; i++ {
		node, err := l.addNode(i)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.nodes = append(l.nodes, node)
	}
	for _, node := range l.nodes {
		l.readers.Add(1)
		go l.read(node)
		l.writers.Add(1)
		go l.deliver(node)
	}
	return l, nil
}

func (l *Lab) addNode(i int) (*Node, error) {
	name := fmt.Sprintf("%s-%d-%d", l.prefix, os.Getpid(), i)
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	node := &Node{Namespace: name, Addr: netip.AddrFrom4([4]byte{10, 77, 0, byte(i)}), index: i, lab: l, queue: make(chan packet, queueLen)}
	err := inNamespace(name, func() error {
		f, err := openTUN()
		node.tun = f
		return err
	})
	if err != nil {
		ip("netns", "del", name)
		return nil, fmt.Errorf("netlab: TUN in %s: %w", name, err)
	}
	for _, args := range [][]string{
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "addr", "add", fmt.Sprintf("%s/%d", node.Addr, Subnet.Bits()), "dev", tunName},
		{"-n", name, "link", "set", tunName, "up"},
	} {
		if err := ip(args...); err != nil {
			node.tun.Close()
			ip("netns", "del", name)
			return nil, err
		}
	}
	return node, nil
}

// Nodes returns the lab's nodes; node i (from 1) is Nodes()[i-1].
func (l *Lab) Nodes() []*Node { return l.nodes }

// SetDelay sets the one-way delay of every packet.
func (l *Lab) SetDelay(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delay = d
}

// SetLoss sets the share of packets dropped at random, 0 to 1.
func (l *Lab) SetLoss(p float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loss = p
}

// SetRate caps the bytes per second the switch delivers to each node (0: no cap), as a slow
// link would.
func (l *Lab) SetRate(bytesPerSecond int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = bytesPerSecond
}

// Partition splits the nodes into sides (by number, from 1): packets between nodes on
// different sides are dropped. Nodes named in no side form one more side together.
func (l *Lab) Partition(sides ...[]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.side = map[int]int{}
	for s, members := range sides {
		for _, i := range members {
			l.side[i] = s + 1
		}
	}
}

// Heal ends any partition.
func (l *Lab) Heal() { l.Partition() }

// verdict decides a packet's fate from src to dst: when to deliver it, or ok false to drop it.
func (l *Lab) verdict(src, dst *Node) (at time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.side[src.index] != l.side[dst.index] {
		return time.Time{}, false
	}
	if l.loss > 0 && l.rng.Float64() < l.loss {
		return time.Time{}, false
	}
	return time.Now().Add(l.delay), true
}

// read takes the packets node's TUN emits and queues each for its destination node.
func (l *Lab) read(src *Node) {
	defer l.readers.Done()
	buf := make([]byte, 65536)
	for {
		n, err := src.tun.Read(buf)
		if err != nil {
			return
		}
		dst := l.destination(buf[:n])
		if dst == nil || dst == src {
			continue
		}
		at, ok := l.verdict(src, dst)
		if !ok {
			dst.Dropped.Add(1)
			continue
		}
		select {
		case dst.queue <- packet{at: at, data: append([]byte(nil), buf[:n]...)}:
		default:
			dst.Dropped.Add(1)
		}
	}
}

// destination is the lab node an IPv4 packet is addressed to, or nil (IPv6, broadcast, or an
// address outside the lab: never forwarded anywhere).
func (l *Lab) destination(p []byte) *Node {
	if len(p) < 20 || p[0]>>4 != 4 {
		return nil
	}
	dst := netip.AddrFrom4([4]byte(p[16:20]))
	if !Subnet.Contains(dst) {
		return nil
	}
	i := int(dst.As4()[3])
	if i < 1 || i > len(l.nodes) {
		return nil
	}
	return l.nodes[i-1]
}

// deliver writes node's queued packets into its TUN when their time comes, in order, paced to
// the lab's rate.
func (l *Lab) deliver(dst *Node) {
	defer l.writers.Done()
	var free time.Time // when the paced link is free again
	for p := range dst.queue {
		if l.closed.Load() {
			continue // closing: drain without waiting
		}
		l.mu.Lock()
		rate := l.rate
		l.mu.Unlock()
		at := p.at
		if rate > 0 {
			at = maxTime(at, free)
			free = at.Add(time.Duration(len(p.data)) * time.Second / time.Duration(rate))
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.tun.Write(p.data); err != nil {
			dst.Dropped.Add(1)
			continue
		}
		dst.Delivered.Add(1)
		dst.Bytes.Add(int64(len(p.data)))
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Close stops the switch and removes the namespaces. Processes still running in them keep
// only their loopback.
func (l *Lab) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	for _, node := range l.nodes {
		node.tun.Close()
	}
	l.readers.Wait()
	for _, node := range l.nodes {
		close(node.queue)
	}
	l.writers.Wait()
	var errs []error
	for _, node := range l.nodes {
		if err := ip("netns", "del", node.Namespace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Command returns a command that runs name inside the node's namespace. `ip netns exec`
// execs name in place, so the command's process is name's own: signals reach it directly. It
// is killed if the process that started it dies first, so a crashed test leaves no node
// running in a namespace nobody will remove.
func (n *Node) Command(name string, args ...string) *exec.Cmd {
	return n.CommandContext(context.Background(), name, args...)
}

// CommandContext is Command with a context that kills the process when done.
func (n *Node) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Namespace, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Dial connects to addr (a literal IP and port) from inside the node's namespace: the socket
// is created there, so 127.0.0.1 is the node's own loopback.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNamespace(n.Namespace, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// ListenPacket opens a packet socket (udp) in the node's namespace.
func (n *Node) ListenPacket(network, addr string) (net.PacketConn, error) {
	var conn net.PacketConn
	err := inNamespace(n.Namespace, func() error {
		var err error
		conn, err = net.ListenPacket(network, addr)
		return err
	})
	return conn, err
}

// inNamespace runs fn on an OS thread switched into the named network namespace, so sockets
// and devices fn creates belong to it. The thread is thrown away afterwards if it cannot be
// switched back.
func inNamespace(name string, fn func() error) error {
	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			result <- err
			return
		}
		defer home.Close()
		target, err := os.Open("/run/netns/" + name)
		if err != nil {
			result <- fmt.Errorf("netns %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			result <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		err = fn()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread() // back home: the thread may serve other goroutines again
		}
		result <- err
	}()
	return <-result
}

// openTUN creates the TUN device syn0 in the calling thread's namespace and returns it open,
// non-blocking (so reads go through Go's poller and Close ends them).
func openTUN() (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(tunName)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+tunName), nil
}

// RemoveStale deletes the namespaces named prefix-PID-N whose PID is no longer running: the
// leftovers of a run that crashed before Close.
func RemoveStale(prefix string) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, prefix+"-")
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		ip("netns", "del", name)
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
