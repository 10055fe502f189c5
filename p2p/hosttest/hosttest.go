// Package hosttest starts plain libp2p hosts on loopback for the tests of the protocol packages
// (p2p/rpc, p2p/blob), which take any host.Host.
package hosttest

import (
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
)

// New is a libp2p host listening on a free loopback TCP port, with opts after that default,
// closed when the test ends.
func New(tb testing.TB, opts ...libp2p.Option) host.Host {
	tb.Helper()
	opts = append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}, opts...)
	h, err := libp2p.New(opts...)
	if err != nil {
		tb.Fatalf("libp2p host: %v", err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}
