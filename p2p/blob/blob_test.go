package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/ekisa-team/syn4pse/p2p/hosttest"
)

// blobTestSink is an in-memory Sink that verifies the digest at commit, as the store does.
type blobTestSink struct {
	data []byte
}

func (s *blobTestSink) Offset() int64 { return int64(len(s.data)) }

func (s *blobTestSink) Write(p []byte) (int, error) {
	s.data = append(s.data, p...)
	return len(p), nil
}

// commit checks what the sink holds against digest, the store's job before it keeps a blob.
func (s *blobTestSink) commit(digest string) error {
	sum := sha256.Sum256(s.data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
		return fmt.Errorf("blob is %s, want %s", got, digest)
	}
	return nil
}

// blobDiscardSink counts what it is given and keeps nothing, so benchmarks measure transport.
type blobDiscardSink struct{ n int64 }

func (s *blobDiscardSink) Offset() int64 { return s.n }

func (s *blobDiscardSink) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	return len(p), nil
}

// blobTestReporter counts the bytes a host writes on Protocol streams: what went on the wire.
type blobTestReporter struct {
	*metrics.BandwidthCounter
	blobSent atomic.Int64
}

func (r *blobTestReporter) LogSentMessageStream(n int64, proto protocol.ID, p peer.ID) {
	if proto == Protocol {
		r.blobSent.Add(n)
	}
	r.BandwidthCounter.LogSentMessageStream(n, proto, p)
}

// blobTestBlob is a random blob written to a file.
type blobTestBlob struct {
	path, digest string
	data         []byte
}

func newBlobTestBlob(tb testing.TB, size int, seed uint64) blobTestBlob {
	tb.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(data)
	sum := sha256.Sum256(data)
	b := blobTestBlob{path: filepath.Join(tb.TempDir(), "blob"), digest: "sha256:" + hex.EncodeToString(sum[:]), data: data}
	if err := os.WriteFile(b.path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return b
}

// blobTestSource serves the given blobs.
func blobTestSource(blobs ...blobTestBlob) Source {
	return func(digest string) (string, bool) {
		for _, b := range blobs {
			if b.digest == digest {
				return b.path, true
			}
		}
		return "", false
	}
}

// newBlobTestPair returns a serving host and a fetching host, connected on loopback.
func newBlobTestPair(tb testing.TB, serverOpts ...libp2p.Option) (server, client host.Host) {
	tb.Helper()
	server = hosttest.New(tb, serverOpts...)
	client = hosttest.New(tb)
	if err := client.Connect(tb.Context(), peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		tb.Fatalf("connect: %v", err)
	}
	return server, client
}

// serveBlobTest serves source on h with timeouts, stopped at cleanup.
func serveBlobTest(tb testing.TB, h host.Host, timeouts blobTimeouts, source Source) *blobServer {
	tb.Helper()
	s := serveBlobs(h, source, timeouts)
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestBlobFetch(t *testing.T) {
	blob := newBlobTestBlob(t, 32<<20, 1)
	server, client := newBlobTestPair(t)
	blobs := Serve(server, blobTestSource(blob), ServeOptions{})
	t.Cleanup(func() { blobs.Close() })
	sink := &blobTestSink{}
	var reports []int64
	err := Fetch(t.Context(), client, server.ID(), blob.digest, int64(len(blob.data)), sink, func(done int64) {
		reports = append(reports, done)
	})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if !bytes.Equal(sink.data, blob.data) {
		t.Fatalf("fetched %d bytes that differ from the %d served", len(sink.data), len(blob.data))
	}
	if err := sink.commit(blob.digest); err != nil {
		t.Error(err)
	}
	if len(reports) < 2 || reports[len(reports)-1] != int64(len(blob.data)) {
		t.Fatalf("progress reports %v, want several ending at %d", reports, len(blob.data))
	}
	blobs.Close() // waits for the handler: its counts are final
	if blobs.BytesSent() != int64(len(blob.data)) || blobs.Transfers() != 1 {
		t.Fatalf("server counts %d bytes in %d transfers, want %d in 1", blobs.BytesSent(), blobs.Transfers(), len(blob.data))
	}
	for i := 1; i < len(reports); i++ {
		if reports[i] <= reports[i-1] {
			t.Fatalf("progress went from %d to %d", reports[i-1], reports[i])
		}
	}
}

func TestBlobResume(t *testing.T) {
	blob := newBlobTestBlob(t, 8<<20, 2)
	reporter := &blobTestReporter{BandwidthCounter: metrics.NewBandwidthCounter()}
	server, client := newBlobTestPair(t, libp2p.BandwidthReporter(reporter))
	served := serveBlobTest(t, server, defaultBlobTimeouts, blobTestSource(blob))
	half := len(blob.data) / 2
	sink := &blobTestSink{data: bytes.Clone(blob.data[:half])}

	if err := Fetch(t.Context(), client, server.ID(), blob.digest, int64(len(blob.data)), sink, nil); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if err := sink.commit(blob.digest); err != nil {
		t.Fatal(err)
	}
	// The 9-byte response header and the second half, nothing more.
	if sent, want := reporter.blobSent.Load(), int64(len(blob.data)-half+9); sent != want {
		t.Errorf("server sent %d bytes, want %d", sent, want)
	}
	served.Close()
	if got, want := served.sent.Load(), int64(len(blob.data)-half); got != want {
		t.Errorf("server counts %d blob bytes sent, want %d", got, want)
	}
	// A complete sink needs no stream at all.
	if err := Fetch(t.Context(), client, server.ID(), blob.digest, int64(len(blob.data)), sink, nil); err != nil {
		t.Errorf("Fetch into a complete sink: %v", err)
	}
}

func TestBlobServerClosesMidTransfer(t *testing.T) {
	blob := newBlobTestBlob(t, 32<<20, 3)
	server, client := newBlobTestPair(t)
	first := serveBlobTest(t, server, defaultBlobTimeouts, blobTestSource(blob))
	sink := &blobTestSink{}
	size := int64(len(blob.data))

	// The server stops as soon as the first chunk has arrived.
	err := Fetch(t.Context(), client, server.ID(), blob.digest, size, sink, func(int64) { first.Close() })
	if err == nil {
		t.Fatal("Fetch succeeded although the server stopped mid-transfer")
	}
	t.Logf("interrupted: %v", err)
	if sink.Offset() == 0 || sink.Offset() >= size {
		t.Fatalf("sink holds %d of %d bytes after the interruption, want part", sink.Offset(), size)
	}
	if !bytes.Equal(sink.data, blob.data[:sink.Offset()]) {
		t.Fatal("sink does not hold a prefix of the blob")
	}

	serveBlobTest(t, server, defaultBlobTimeouts, blobTestSource(blob))
	resumedAt := sink.Offset()
	if err := Fetch(t.Context(), client, server.ID(), blob.digest, size, sink, nil); err != nil {
		t.Fatalf("Fetch after the server came back (from %d): %v", resumedAt, err)
	}
	if err := sink.commit(blob.digest); err != nil {
		t.Fatal(err)
	}
}

func TestBlobRefused(t *testing.T) {
	blob := newBlobTestBlob(t, 1<<20, 4)
	size := int64(len(blob.data))
	server, client := newBlobTestPair(t)
	serveBlobTest(t, server, defaultBlobTimeouts, blobTestSource(blob))
	unknown := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name   string
		digest string
		size   int64 // the size the caller believes
		held   int   // bytes already in the sink
		want   error
		substr string
	}{
		{"unknown digest", unknown, size, 0, ErrNotFound, "not held"},
		// The caller's size is wrong, so its sink may hold more than the peer's blob.
		{"offset past the peer's end", blob.digest, size + 100, int(size) + 10, ErrRange, "past the end"},
		{"sink holds more than size", blob.digest, size, int(size) + 1, ErrRange, ""},
		{"size differs from the peer's", blob.digest, size + 1, 0, nil, "has 1048576 bytes"},
		{"malformed digest", "sha256:ABC", size, 0, nil, "lowercase hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &blobTestSink{data: make([]byte, tt.held)}
			err := Fetch(t.Context(), client, server.ID(), tt.digest, tt.size, sink, nil)
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("error %q does not say %q", err, tt.substr)
			}
			if sink.Offset() != int64(tt.held) {
				t.Errorf("sink grew to %d bytes", sink.Offset())
			}
		})
	}

	noBlobs := hosttest.New(t) // a peer that does not serve Protocol at all
	if err := client.Connect(t.Context(), peer.AddrInfo{ID: noBlobs.ID(), Addrs: noBlobs.Addrs()}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	if err := Fetch(t.Context(), client, noBlobs.ID(), blob.digest, size, &blobTestSink{}, nil); err == nil {
		t.Error("Fetch from a peer without Protocol succeeded")
	}
}

func TestBlobGarbageRefused(t *testing.T) {
	blob := newBlobTestBlob(t, 16<<20, 5)
	server, client := newBlobTestPair(t)
	timeouts := blobTimeouts{request: 200 * time.Millisecond, idle: 300 * time.Millisecond}
	blobs := serveBlobTest(t, server, timeouts, blobTestSource(blob))
	garbage := []struct {
		name, payload string
		keepOpen      bool // the peer keeps its side open and never reads
	}{
		{"nothing", "", false},
		{"binary", strings.Repeat("\xde\xad\xbe\xef\x13", 1000), false},
		{"no newline", blob.digest + " 0", false},
		{"bad digest", "sha256:xyz 0\n", false},
		{"negative offset", blob.digest + " -5\n", false},
		{"offset not a number", blob.digest + " 1e9\n", false},
		{"silent", "", true},
		{"half a request", blob.digest, true},
		{"never reads the answer", blob.digest + " 0\n", true},
	}
	for _, g := range garbage {
		t.Run(g.name, func(t *testing.T) {
			s, err := client.NewStream(t.Context(), server.ID(), Protocol)
			if err != nil {
				t.Fatalf("open raw stream: %v", err)
			}
			defer s.Reset()
			if _, err := io.WriteString(s, g.payload); err != nil {
				t.Fatalf("write garbage: %v", err)
			}
			if g.keepOpen {
				// The server's timeouts end the handler, however the peer behaves.
				waitUntil(t, 5*time.Second, "the server took the stream", func() bool { return blobs.inFlight() == 1 })
				waitUntil(t, 5*time.Second, "the server dropped the stalled stream", func() bool { return blobs.inFlight() == 0 })
				return
			}
			if err := s.CloseWrite(); err != nil {
				t.Fatalf("close write: %v", err)
			}
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			reply, err := io.ReadAll(s)
			if err != nil {
				t.Fatalf("server did not close the garbage stream: %v", err)
			}
			if len(reply) < 9 || reply[0] != blobStatusBadRequest {
				t.Fatalf("server answered %q, want a bad-request refusal", reply)
			}
			t.Logf("refused: %s", reply[9:])
		})
	}

	// The server still serves. Its 300 ms idle timeout can cut a 16 MiB fetch on a loaded
	// machine (a write that waits that long for the reader); a fetch resumes where it stopped,
	// as the puller's does, so a few tries finish it.
	sink := &blobTestSink{}
	var err error
	for try := 1; try <= 5; try++ {
		if err = Fetch(t.Context(), client, server.ID(), blob.digest, int64(len(blob.data)), sink, nil); err == nil {
			break
		}
		t.Logf("fetch try %d stopped at %d bytes: %v", try, sink.Offset(), err)
	}
	if err != nil {
		t.Fatalf("Fetch after garbage: %v", err)
	}
	if err := sink.commit(blob.digest); err != nil {
		t.Error(err)
	}
}

// TestBlobTampered shows that Fetch moves bytes without judging them: a server whose file
// does not match the digest completes the fetch, and the sink's sha256 check at commit is what
// catches it.
func TestBlobTampered(t *testing.T) {
	blob := newBlobTestBlob(t, 1<<20, 6)
	forged := newBlobTestBlob(t, len(blob.data), 7)
	server, client := newBlobTestPair(t)
	serveBlobTest(t, server, defaultBlobTimeouts, func(digest string) (string, bool) {
		return forged.path, digest == blob.digest
	})
	sink := &blobTestSink{}
	if err := Fetch(t.Context(), client, server.ID(), blob.digest, int64(len(blob.data)), sink, nil); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if err := sink.commit(blob.digest); err == nil {
		t.Fatal("the sink committed a forged blob")
	} else {
		t.Logf("commit refused the forged blob: %v", err)
	}
}

func TestBlobCancel(t *testing.T) {
	blob := newBlobTestBlob(t, 32<<20, 8)
	server, client := newBlobTestPair(t)
	blobs := serveBlobTest(t, server, defaultBlobTimeouts, blobTestSource(blob))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	start := time.Now()
	err := Fetch(ctx, client, server.ID(), blob.digest, int64(len(blob.data)), &blobTestSink{}, func(int64) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch after cancel: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancelled fetch took %v", took)
	}
	// The reset reaches the server, which frees its handler at once rather than after the idle
	// timeout.
	waitUntil(t, 5*time.Second, "the server's handler ended", func() bool { return blobs.inFlight() == 0 })
}

func TestBlobStalledSender(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	server, client := newBlobTestPair(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	// A peer that announces 1 MiB, sends 1000 bytes, then nothing: not Serve, a misbehaving
	// peer. Its handler ends when the test does.
	server.SetStreamHandler(Protocol, func(s network.Stream) {
		defer s.Reset()
		if _, _, err := readBlobRequest(s); err != nil {
			return
		}
		s.Write([]byte{blobStatusOK, 0, 0, 0, 0, 0, 0x10, 0, 0})
		s.Write(make([]byte, 1000))
		<-release
	})
	sink := &blobTestSink{}
	start := time.Now()
	err := fetchBlob(t.Context(), client, server.ID(), digest, 1<<20, sink, nil, 300*time.Millisecond)
	if !isTimeout(err) {
		t.Fatalf("Fetch from a stalled peer: %v, want a timeout", err)
	}
	t.Logf("after %v: %v", time.Since(start), err)
	if sink.Offset() != 1000 {
		t.Errorf("sink holds %d bytes, want the 1000 that arrived", sink.Offset())
	}
}

// blobBareProtocol is the benchmark's baseline: the whole file, copied onto the stream.
// Both ends copy through 1 MiB buffers, as Fetch does, so the ratio measures the protocol
// rather than buffer sizes (plain io.Copy moves 32 KiB at a time and is ~10% slower).
const blobBareProtocol protocol.ID = "/syn4pse/test/blob-bare"

// BenchmarkBlobTransfer moves the same 64 MiB file between the same two hosts through
// Fetch and through a bare stream (io.CopyBuffer on both sides), alternating the two in every
// iteration, and reports both rates and their ratio.
func BenchmarkBlobTransfer(b *testing.B) {
	blob := newBlobTestBlob(b, 64<<20, 9)
	size := int64(len(blob.data))
	server, client := newBlobTestPair(b)
	serveBlobTest(b, server, defaultBlobTimeouts, blobTestSource(blob))
	server.SetStreamHandler(blobBareProtocol, func(s network.Stream) {
		defer s.Close()
		f, err := os.Open(blob.path)
		if err != nil {
			s.Reset()
			return
		}
		defer f.Close()
		// Hiding WriterTo keeps os.File from falling back to its own 32 KiB copy.
		io.CopyBuffer(s, struct{ io.Reader }{f}, make([]byte, blobBufferSize))
	})
	b.Cleanup(func() { server.RemoveStreamHandler(blobBareProtocol) })

	var fetchTime, bareTime time.Duration
	for b.Loop() {
		start := time.Now()
		sink := &blobDiscardSink{}
		if err := Fetch(b.Context(), client, server.ID(), blob.digest, size, sink, nil); err != nil {
			b.Fatalf("Fetch: %v", err)
		}
		fetchTime += time.Since(start)

		start = time.Now()
		s, err := client.NewStream(b.Context(), server.ID(), blobBareProtocol)
		if err != nil {
			b.Fatalf("bare stream: %v", err)
		}
		bare := &blobDiscardSink{}
		_, err = io.CopyBuffer(bare, s, make([]byte, blobBufferSize))
		s.Close()
		if err != nil || bare.n != size {
			b.Fatalf("bare copy: %d bytes, %v", bare.n, err)
		}
		bareTime += time.Since(start)
	}
	moved := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(moved/fetchTime.Seconds(), "fetch-MB/s")
	b.ReportMetric(moved/bareTime.Seconds(), "bare-MB/s")
	b.ReportMetric(bareTime.Seconds()/fetchTime.Seconds(), "fetch/bare")
}

// blobHeldSink is a Sink whose first Write says so on started and then waits for release: a
// transfer held in flight.
type blobHeldSink struct {
	blobTestSink
	started chan struct{}
	release chan struct{}
	once    bool
}

func (s *blobHeldSink) Write(p []byte) (int, error) {
	if !s.once {
		s.once = true
		close(s.started)
		<-s.release
	}
	return s.blobTestSink.Write(p)
}

func TestBlobBusyPerPeer(t *testing.T) {
	blob := newBlobTestBlob(t, 4<<20, 10)
	size := int64(len(blob.data))
	server, client := newBlobTestPair(t)
	blobs := Serve(server, blobTestSource(blob), ServeOptions{MaxTransfersPerPeer: 2})
	t.Cleanup(func() { blobs.Close() })

	release := make(chan struct{})
	held := make([]*blobHeldSink, 2)
	done := make(chan error, len(held))
	for i := range held {
		held[i] = &blobHeldSink{started: make(chan struct{}), release: release}
		go func() { done <- Fetch(t.Context(), client, server.ID(), blob.digest, size, held[i], nil) }()
		<-held[i].started // bytes arrived: the server is sending this transfer
	}

	err := Fetch(t.Context(), client, server.ID(), blob.digest, size, &blobTestSink{}, nil)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "p2p.peer_max_transfers") {
		t.Fatalf("third transfer from one peer: %v, want ErrBusy naming p2p.peer_max_transfers", err)
	}
	// The limit is per peer: another peer is served meanwhile.
	other := hosttest.New(t)
	if err := other.Connect(t.Context(), peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if err := Fetch(t.Context(), other, server.ID(), blob.digest, size, &blobTestSink{}, nil); err != nil {
		t.Fatalf("another peer's transfer while the first is at its limit: %v", err)
	}

	close(release)
	for range held {
		if err := <-done; err != nil {
			t.Fatalf("held transfer: %v", err)
		}
	}
	for i, s := range held {
		if err := s.commit(blob.digest); err != nil {
			t.Errorf("held transfer %d: %v", i, err)
		}
	}
	// Ended transfers free their places.
	if err := Fetch(t.Context(), client, server.ID(), blob.digest, size, &blobTestSink{}, nil); err != nil {
		t.Errorf("transfer after the others ended: %v", err)
	}
}

func TestBlobSinkGetsWhatArrivedWhileTheSenderStalls(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	server, client := newBlobTestPair(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	// A peer that announces 1 MiB (one copy buffer), sends 200 KiB, then waits: what arrived
	// must reach the sink now, not when the buffer fills, or a receiver killed meanwhile loses it.
	server.SetStreamHandler(Protocol, func(s network.Stream) {
		defer s.Reset()
		if _, _, err := readBlobRequest(s); err != nil {
			return
		}
		s.Write([]byte{blobStatusOK, 0, 0, 0, 0, 0, 0x10, 0, 0})
		s.Write(make([]byte, 200<<10))
		<-release
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	written := make(chan int64, 16)
	fetched := make(chan error, 1)
	go func() {
		fetched <- fetchBlob(ctx, client, server.ID(), digest, 1<<20, &blobTestSink{}, func(done int64) {
			select {
			case written <- done:
			default:
			}
		}, time.Minute)
	}()
	select {
	case done := <-written:
		if done < blobSinkSlice {
			t.Fatalf("sink written with %d bytes, want at least %d", done, blobSinkSlice)
		}
	case err := <-fetched:
		t.Fatalf("fetch ended before anything reached the sink: %v", err)
	case <-time.After(30 * time.Second): // a liveness bound: the sender never sends more
		t.Fatal("nothing reached the sink while the sender stalled")
	}
	cancel()
	<-fetched
}
