package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
)

func TestPSKProbe(t *testing.T) {
	a := startTestHost(t, Config{SwarmKey: newTestKey(t)})
	fast, hung := 0, 0
	fastPlain, hungPlain := 0, 0
	for range 200 {
		o := startTestHost(t, Config{SwarmKey: newTestKey(t), DialTimeout: 300 * time.Millisecond})
		start := time.Now()
		if err := o.Connect(context.Background(), infoOf(a)); err == nil {
			t.Fatal("connected")
		}
		if time.Since(start) < 100*time.Millisecond { fast++ } else { hung++ }
		o.Close()
		p, _ := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start = time.Now()
		_ = p.Connect(ctx, infoOf(a))
		cancel()
		if time.Since(start) < 100*time.Millisecond { fastPlain++ } else { hungPlain++ }
		p.Close()
	}
	t.Logf("different key: fast %d hung %d; no key: fast %d hung %d", fast, hung, fastPlain, hungPlain)
}
