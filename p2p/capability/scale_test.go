package capability

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// gossipScaleResult is what one scale run measured.
type gossipScaleResult struct {
	converge       time.Duration // first connection to every table holding every other host
	neighboursDrop time.Duration // killed host to gone from its direct neighbours' tables
	allDrop        time.Duration // killed host to gone from every table
	edges          int
	publishes      int // announcements published until convergence, all hosts together
	expiries       int // table entries that expired before convergence (churn)
}

// gossipScaleEdges connects n hosts in a ring plus n/5 random chords: sparse, so announcements
// cross several hops, and still connected when one host dies.
func gossipScaleEdges(n int, rng *rand.Rand) [][2]int {
	seen := map[[2]int]bool{}
	var edges [][2]int
	add := func(i, j int) {
		if i == j {
			return
		}
		e := [2]int{min(i, j), max(i, j)}
		if !seen[e] {
			seen[e] = true
			edges = append(edges, e)
		}
	}
	for i := range n {
		add(i, (i+1)%n)
	}
	for range n / 5 {
		add(rng.IntN(n), rng.IntN(n))
	}
	return edges
}

// runGossipScale starts n announcing hosts, connects them sparsely, waits for every table to
// hold every other host, then closes one host and waits for it to leave every table.
func runGossipScale(tb testing.TB, n int, seed uint64, opts AnnouncerOptions) gossipScaleResult {
	tb.Helper()
	const deadline = 60 * time.Second
	nodes := newGossipTestHosts(tb, n)
	startGossipTestAnnouncers(tb, nodes, opts)
	edges := gossipScaleEdges(n, rand.New(rand.NewPCG(seed, uint64(n))))

	start := time.Now()
	for _, e := range edges {
		connectGossipTestHosts(tb, nodes[e[0]].host, nodes[e[1]].host)
	}
	full := func() bool {
		for _, node := range nodes {
			if node.ann.Table().Len() != n-1 {
				return false
			}
		}
		return true
	}
	converged := waitGossipTest(deadline, full)
	res := gossipScaleResult{converge: time.Since(start), edges: len(edges)}
	entries := 0
	for _, node := range nodes {
		res.publishes += node.log.count("capability published")
		res.expiries += node.log.count("peer expired")
		entries += node.ann.Table().Len()
	}
	if !converged {
		tb.Fatalf("%d hosts: tables not full within %v: %d of %d entries, %d announcements, %d expiries",
			n, deadline, entries, n*(n-1), res.publishes, res.expiries)
	}

	victim := nodes[0]
	var neighbours, others []*gossipTestNode
	for _, node := range nodes[1:] {
		if len(node.host.Network().ConnsToPeer(victim.host.ID())) > 0 {
			neighbours = append(neighbours, node)
		} else {
			others = append(others, node)
		}
	}
	forgotten := func(group []*gossipTestNode) func() bool {
		return func() bool {
			for _, node := range group {
				if _, ok := node.ann.Table().Get(victim.host.ID()); ok {
					return false
				}
			}
			return true
		}
	}
	start = time.Now()
	if err := victim.host.Close(); err != nil {
		tb.Fatal(err)
	}
	if !waitGossipTest(deadline, forgotten(neighbours)) {
		tb.Fatalf("%d hosts: neighbours kept the killed host for %v", n, deadline)
	}
	res.neighboursDrop = time.Since(start)
	if !waitGossipTest(deadline, forgotten(others)) {
		tb.Fatalf("%d hosts: the killed host stayed in tables for %v", n, deadline)
	}
	res.allDrop = time.Since(start)
	return res
}

// gossipScaleOptions announce faster than the defaults, so the test's dead-host wait (about a
// TTL) stays short; BenchmarkConvergence measures with the defaults.
var gossipScaleOptions = AnnouncerOptions{Interval: time.Second, TTL: 5 * time.Second}

func TestScaleConvergence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts up to 50 libp2p hosts")
	}
	for _, n := range []int{10, 25, 50} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := runGossipScale(t, n, 1, gossipScaleOptions)
			t.Logf("%d hosts, %d links, interval %v, TTL %v: converged in %v (%d announcements, %d expiries); "+
				"killed host left its neighbours' tables in %v, all tables in %v",
				n, r.edges, gossipScaleOptions.Interval, gossipScaleOptions.TTL, r.converge, r.publishes, r.expiries,
				r.neighboursDrop, r.allDrop)
		})
	}
}

// BenchmarkConvergence measures, with the default AnnouncerOptions, how long a sparse mesh of
// N fresh hosts takes until every table holds every other host, and how long a killed host
// stays in its neighbours' and in all tables (about a TTL for hosts not connected to it).
func BenchmarkConvergence(b *testing.B) {
	for _, n := range []int{10, 25, 50} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var total gossipScaleResult
			for i := range b.N {
				r := runGossipScale(b, n, uint64(i+1), AnnouncerOptions{})
				total.converge += r.converge
				total.neighboursDrop += r.neighboursDrop
				total.allDrop += r.allDrop
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
			b.ReportMetric(ms(total.converge), "ms/converge")
			b.ReportMetric(ms(total.neighboursDrop), "ms/neighbours-drop")
			b.ReportMetric(ms(total.allDrop), "ms/all-drop")
		})
	}
}
