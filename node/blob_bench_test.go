package node_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ekisa-team/syn4pse/node/models/store"
	"github.com/ekisa-team/syn4pse/p2p/blob"
)

// BenchmarkPeerPull measures what a pull from a peer costs end to end (blob protocol into the
// store: partial file, sha256, fsync, rename) against a bare libp2p stream copying the same
// bytes between the same two hosts into io.Discard (the transport's own limit), alternating.
func BenchmarkPeerPull(b *testing.B) {
	const size = 128 << 20
	dir := b.TempDir()
	blobPath := filepath.Join(dir, "blob")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(blobPath, data, 0o644); err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	server, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	client, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	if err := client.Connect(b.Context(), peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		b.Fatal(err)
	}
	closer := blob.Serve(server, func(d string) (string, bool) { return blobPath, d == digest }, blob.ServeOptions{})
	defer closer.Close()
	const bare = "/syn4pse-bench/bare/1.0.0"
	server.SetStreamHandler(bare, func(s network.Stream) {
		defer s.Close()
		f, err := os.Open(blobPath)
		if err != nil {
			s.Reset()
			return
		}
		defer f.Close()
		io.CopyBuffer(s, f, make([]byte, 1<<20))
	})

	var pullSeconds, bareSeconds float64
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		st, err := store.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		w, err := st.BlobWriter(digest, size)
		if err != nil {
			b.Fatal(err)
		}
		if err := blob.Fetch(b.Context(), client, server.ID(), digest, size, w, nil); err != nil {
			b.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
		pullSeconds += time.Since(start).Seconds()

		start = time.Now()
		s, err := client.NewStream(b.Context(), server.ID(), bare)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, s, make([]byte, 1<<20))
		if err != nil || n != size {
			b.Fatalf("bare copy: %d bytes, %v", n, err)
		}
		s.Close()
		bareSeconds += time.Since(start).Seconds()
	}
	mb := float64(size) / 1e6 * float64(b.N)
	b.ReportMetric(mb/pullSeconds, "pull_MB/s")
	b.ReportMetric(mb/bareSeconds, "bare_MB/s")
	b.ReportMetric(bareSeconds/pullSeconds, "pull/bare")
}
