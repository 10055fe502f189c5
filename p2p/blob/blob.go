// Package blob is the model blob protocol (/syn4pse/blob/1.0.0): a node serves the blobs of the
// models it holds to mesh members, and fetches them from peers resumably, over a plain libp2p
// host (the mesh's private network authenticates the peers).
package blob

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Protocol carries model blobs between mesh members.
//
// One stream carries one request. The fetcher writes a request line and closes its side:
//
//	sha256:<64 lowercase hex> <offset, decimal>\n
//
// at most 128 bytes, within 10 s of opening the stream. The server answers with a 9-byte header,
// a status byte then a big-endian uint64:
//
//   - status 0 (ok): the uint64 is the blob's whole size; the bytes from offset to the end follow,
//     then the server closes the stream. A server that fails midway resets it instead.
//   - any other status: the uint64 is the length (at most 1 KiB) of a UTF-8 message that
//     follows, then the server closes the stream. 1: blob not held; 2: offset past the end;
//     3: malformed request; 4: blob held but unreadable; 5: busy, the peer already has as many
//     transfers running from this server as it allows one peer (retry later, or another peer).
//
// Nothing on the wire is verified: the libp2p connection authenticates the peer, and the
// fetcher's store checks the sha256 of the whole blob before it commits it.
const Protocol protocol.ID = "/syn4pse/blob/1.0.0"

// Response statuses of Protocol.
const (
	blobStatusOK byte = iota
	blobStatusNotFound
	blobStatusBadRange
	blobStatusBadRequest
	blobStatusUnavailable
	blobStatusBusy
)

const (
	// openTimeout bounds opening a stream: a peer whose private-network handshake stalls
	// would hang the dial otherwise (the host's dial timeout).
	openTimeout = 10 * time.Second
	// blobMaxRequest bounds the request line: a digest, an offset and the separators fit in 93.
	blobMaxRequest = 128
	// blobMaxMessage bounds a refusal's message.
	blobMaxMessage = 1024
	// blobBufferSize is the copy buffer on both sides: large enough that per-chunk costs
	// (deadline updates, progress calls, sink writes) vanish next to the bytes moved.
	blobBufferSize = 1 << 20
	// blobWriteSlice is the most a server writes under one deadline.
	blobWriteSlice = 256 << 10
	// busyLogGap spaces the log lines about one peer's refused transfers.
	busyLogGap = 10 * time.Second
	// blobSinkSlice is how much a receiver gathers before it writes to the sink: a node
	// killed mid-pull loses at most this much of what had arrived (the next fetch resumes
	// after what the sink holds).
	blobSinkSlice = 64 << 10
)

// blobTimeouts bound the waits of one transfer; tests shorten them.
type blobTimeouts struct {
	// request is how long a server waits for the request line.
	request time.Duration
	// idle is how long either side waits without progress (a read or a write that moves no
	// byte) before giving up on the stream.
	idle time.Duration
}

// defaultBlobTimeouts suit a LAN or a home uplink: a peer that moves nothing for 30 s is gone.
var defaultBlobTimeouts = blobTimeouts{request: 10 * time.Second, idle: 30 * time.Second}

// ErrNotFound reports a peer that does not serve the blob; ask another provider.
var ErrNotFound = errors.New("blob not found")

// ErrBusy reports a peer that refused the transfer because this node already has as many
// transfers running from it as it allows one peer: retry later, or ask another provider. It is
// no fault of the peer.
var ErrBusy = errors.New("peer busy")

// ErrRange reports a resume offset past the blob's end: the partial file is not a prefix
// of this blob.
var ErrRange = errors.New("offset past the end of the blob")

// blobBuffers recycles copy buffers so a transfer allocates none per chunk.
var blobBuffers = sync.Pool{New: func() any { b := make([]byte, blobBufferSize); return &b }}

// ServeOptions tune Serve; the zero value has no limits.
type ServeOptions struct {
	// MaxTransfersPerPeer is how many transfers one peer may have running at once; a request
	// past it is refused with status busy. 0 means no limit.
	MaxTransfersPerPeer int
}

// Source is what a serving node offers: the path of a verified blob it holds, by digest
// ("sha256:<hex>").
type Source func(digest string) (path string, ok bool)

// Serve answers blob requests on h until the returned closer is closed. Only blobs the
// source returns are served.
//
// Closing stops accepting requests, resets the transfers in flight (their fetchers keep what
// arrived and may resume later) and waits for them to end. Call Serve once per host: a
// second call takes the protocol over from the first, and closing the first then removes it.
func Serve(h host.Host, source Source, opts ServeOptions) *Server {
	s := serveBlobs(h, source, defaultBlobTimeouts)
	s.maxPerPeer = max(opts.MaxTransfersPerPeer, 0)
	return &Server{s}
}

// Server is a running blob server, as Serve returns it.
type Server struct{ s *blobServer }

// Close stops serving, resets the transfers in flight and waits until their handlers return.
func (s *Server) Close() error { return s.s.Close() }

// BytesSent counts the blob bytes sent to peers since Serve, those of transfers cut short
// included (response headers and refusals are not counted).
func (s *Server) BytesSent() int64 { return s.s.sent.Load() }

// Transfers counts the requests answered with a blob since Serve.
func (s *Server) Transfers() int64 { return s.s.transfers.Load() }

func serveBlobs(h host.Host, source Source, timeouts blobTimeouts) *blobServer {
	s := &blobServer{host: h, source: source, timeouts: timeouts, active: make(map[network.Stream]struct{}),
		perPeer: make(map[peer.ID]int), busyLogged: make(map[peer.ID]time.Time)}
	h.SetStreamHandler(Protocol, s.handle)
	return s
}

// blobServer is what Serve returns. libp2p runs each request's handler on its own
// goroutine; the server tracks them so Close can stop and wait for them.
type blobServer struct {
	host       host.Host
	source     Source
	timeouts   blobTimeouts
	maxPerPeer int // 0: no limit
	// sent and transfers count what the server gave peers, for the node's metrics.
	sent, transfers atomic.Int64

	mu         sync.Mutex
	closed     bool
	active     map[network.Stream]struct{}
	perPeer    map[peer.ID]int       // transfers running, by peer; only peers with some
	busyLogged map[peer.ID]time.Time // last busy refusal logged, by peer
	handlers   sync.WaitGroup
}

// Close stops serving, resets the transfers in flight and waits until their handlers return.
func (s *blobServer) Close() error {
	s.mu.Lock()
	var inFlight []network.Stream
	if !s.closed {
		s.closed = true
		s.host.RemoveStreamHandler(Protocol)
		for stream := range s.active {
			inFlight = append(inFlight, stream)
		}
	}
	s.mu.Unlock()
	for _, stream := range inFlight {
		stream.Reset()
	}
	s.handlers.Wait()
	return nil
}

// inFlight returns how many requests are being handled.
func (s *blobServer) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}

// handle serves one request stream.
func (s *blobServer) handle(stream network.Stream) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		stream.Reset()
		return
	}
	s.active[stream] = struct{}{}
	s.handlers.Add(1)
	from := stream.Conn().RemotePeer()
	running := s.perPeer[from]
	busy := s.maxPerPeer > 0 && running >= s.maxPerPeer
	if !busy {
		s.perPeer[from]++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.active, stream)
		if !busy {
			if s.perPeer[from]--; s.perPeer[from] <= 0 {
				delete(s.perPeer, from)
			}
		}
		s.mu.Unlock()
		s.handlers.Done()
	}()

	var err error
	if busy {
		err = s.refuseBusy(stream, from, running)
	} else {
		err = s.serve(stream)
	}
	if err != nil {
		slog.Debug("blob request failed", "peer", stream.Conn().RemotePeer(), "err", err)
		stream.Reset()
		return
	}
	stream.Close()
}

// serve answers the request on stream. A refusal is an answer (nil); an error means the stream
// is broken and must be reset.
func (s *blobServer) serve(stream network.Stream) error {
	stream.SetReadDeadline(time.Now().Add(s.timeouts.request))
	digest, offset, err := readBlobRequest(stream)
	if err != nil {
		return s.refuse(stream, blobStatusBadRequest, err.Error())
	}
	path, ok := s.source(digest)
	if !ok {
		return s.refuse(stream, blobStatusNotFound, "blob not held: "+digest)
	}
	file, err := os.Open(path)
	if err != nil {
		slog.Warn("blob held but unreadable", "digest", digest, "err", err)
		return s.refuse(stream, blobStatusUnavailable, "blob unreadable: "+digest)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		slog.Warn("blob held but unreadable", "digest", digest, "err", err)
		return s.refuse(stream, blobStatusUnavailable, "blob unreadable: "+digest)
	}
	size := info.Size()
	if offset > size {
		return s.refuse(stream, blobStatusBadRange, fmt.Sprintf("offset %d past the end (%d bytes)", offset, size))
	}
	if err := s.writeHeader(stream, blobStatusOK, uint64(size)); err != nil {
		return err
	}
	s.transfers.Add(1)
	return s.send(stream, io.NewSectionReader(file, offset, size-offset))
}

// refuseBusy reads the request (the fetcher sends it before it reads) and answers busy.
func (s *blobServer) refuseBusy(stream network.Stream, from peer.ID, running int) error {
	stream.SetReadDeadline(time.Now().Add(s.timeouts.request))
	digest, _, err := readBlobRequest(stream)
	if err != nil {
		return s.refuse(stream, blobStatusBadRequest, err.Error())
	}
	now := time.Now()
	s.mu.Lock()
	quiet := now.Sub(s.busyLogged[from]) < busyLogGap
	if !quiet {
		if len(s.busyLogged) > 1024 {
			clear(s.busyLogged)
		}
		s.busyLogged[from] = now
	}
	s.mu.Unlock()
	if !quiet {
		slog.Warn("blob transfer refused: peer busy", "peer", from, "digest", digest, "running", running, "max", s.maxPerPeer)
	}
	return s.refuse(stream, blobStatusBusy, fmt.Sprintf("%d transfers of yours are running here, the most p2p.peer_max_transfers allows; retry later or pull from another peer", running))
}

// send copies body to stream. The write deadline moves with every blobWriteSlice written, so a
// fetcher that stops reading releases this handler after the idle timeout, while a slow one
// (down to blobWriteSlice per idle timeout) is still served.
func (s *blobServer) send(stream network.Stream, body *io.SectionReader) error {
	buf := blobBuffers.Get().(*[]byte)
	defer blobBuffers.Put(buf)
	var sent int64
	for {
		n, readErr := io.ReadFull(body, *buf)
		for start := 0; start < n; start += blobWriteSlice {
			stream.SetWriteDeadline(time.Now().Add(s.timeouts.idle))
			written, err := stream.Write((*buf)[start:min(start+blobWriteSlice, n)])
			s.sent.Add(int64(written))
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
		sent += int64(n)
		switch {
		case readErr == io.EOF || readErr == io.ErrUnexpectedEOF:
			if sent != body.Size() {
				// The file shrank under us; a reset tells the fetcher the blob is incomplete.
				return fmt.Errorf("blob file ended after %d of %d bytes", sent, body.Size())
			}
			return nil
		case readErr != nil:
			return fmt.Errorf("read blob file: %w", readErr)
		}
	}
}

// refuse answers with a non-ok status and a message.
func (s *blobServer) refuse(stream network.Stream, status byte, message string) error {
	if len(message) > blobMaxMessage {
		message = message[:blobMaxMessage]
	}
	if err := s.writeHeader(stream, status, uint64(len(message))); err != nil {
		return err
	}
	_, err := io.WriteString(stream, message)
	return err
}

// writeHeader writes a response header.
func (s *blobServer) writeHeader(stream network.Stream, status byte, value uint64) error {
	var header [9]byte
	header[0] = status
	binary.BigEndian.PutUint64(header[1:], value)
	stream.SetWriteDeadline(time.Now().Add(s.timeouts.idle))
	_, err := stream.Write(header[:])
	return err
}

// readBlobRequest reads and parses a request line.
func readBlobRequest(r io.Reader) (digest string, offset int64, err error) {
	// The reader never buffers more than blobMaxRequest bytes, so a longer line is refused
	// without reading it.
	line, err := bufio.NewReaderSize(r, blobMaxRequest).ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", 0, fmt.Errorf("request longer than %d bytes", blobMaxRequest)
	case err != nil:
		return "", 0, fmt.Errorf("read request: %w", err)
	}
	digest, offsetText, ok := strings.Cut(strings.TrimSuffix(string(line), "\n"), " ")
	if !ok || !validBlobDigest(digest) {
		return "", 0, errors.New("want request line \"sha256:<64 lowercase hex> <offset>\"")
	}
	offset, err = strconv.ParseInt(offsetText, 10, 64)
	if err != nil || offset < 0 {
		return "", 0, fmt.Errorf("bad offset %q", offsetText)
	}
	return digest, offset, nil
}

// validBlobDigest reports whether digest is "sha256:" and 64 lowercase hex digits, the one
// spelling of a digest that sources are asked about.
func validBlobDigest(digest string) bool {
	hexDigest, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexDigest) != 64 {
		return false
	}
	for _, c := range []byte(hexDigest) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Sink receives a blob: it says how many bytes it already has (to resume) and takes the
// rest.
type Sink interface {
	Offset() int64
	Write(p []byte) (int, error)
}

// Fetch fetches digest (size known) from peer starting at sink.Offset(), writing into sink;
// it returns when all bytes arrived or on error. It does not verify: the sink (the store)
// verifies the sha256 at commit.
//
// Whatever arrived before an error stays in the sink, so calling Fetch again (with this
// peer or another provider) continues where it stopped. progress, if not nil, is called on
// Fetch's goroutine after each chunk with the bytes the sink now holds, out of size.
// Cancelling ctx resets the stream at once. A peer that sends nothing for 30 s is given up on.
// The peer's addresses must be known to h (peerstore or DHT); the stream is opened within
// openTimeout. The error wraps ErrNotFound when the peer does not serve the blob and
// ErrRange when the sink holds more than the blob.
func Fetch(ctx context.Context, h host.Host, p peer.ID, digest string, size int64, sink Sink, progress func(done int64)) error {
	return fetchBlob(ctx, h, p, digest, size, sink, progress, defaultBlobTimeouts.idle)
}

func fetchBlob(ctx context.Context, h host.Host, p peer.ID, digest string, size int64, sink Sink, progress func(done int64), idle time.Duration) error {
	if !validBlobDigest(digest) {
		return fmt.Errorf("fetch %s: want sha256:<64 lowercase hex>", digest)
	}
	offset := sink.Offset()
	switch {
	case offset < 0 || offset > size:
		return fmt.Errorf("fetch %s: sink holds %d of %d bytes: %w", digest, offset, size, ErrRange)
	case offset == size:
		return nil
	}

	openCtx, cancel := context.WithTimeout(ctx, openTimeout)
	stream, err := h.NewStream(openCtx, p, Protocol)
	cancel()
	if err != nil {
		return fmt.Errorf("fetch %s from %s: open stream: %w", digest, p, err)
	}
	stop := context.AfterFunc(ctx, func() { stream.Reset() })
	defer stop()

	t := blobTransfer{stream: stream, idle: idle, sink: sink, progress: progress}
	if err := t.run(digest, offset, size); err != nil {
		stream.Reset()
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return fmt.Errorf("fetch %s from %s at %d of %d bytes: %w", digest, p, sink.Offset(), size, err)
	}
	stream.Close()
	return nil
}

// blobTransfer is the fetching side of one stream.
type blobTransfer struct {
	stream   network.Stream
	idle     time.Duration
	sink     Sink
	progress func(done int64)
}

// run sends the request and copies the response body into the sink.
func (t *blobTransfer) run(digest string, offset, size int64) error {
	t.stream.SetWriteDeadline(time.Now().Add(t.idle))
	if _, err := fmt.Fprintf(t.stream, "%s %d\n", digest, offset); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	if err := t.stream.CloseWrite(); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	return t.readResponse(t, offset, size)
}

// readResponse reads the server's answer from r (the stream, through t's idle timeout): the
// header, then the body into the sink or a refusal's message. It trusts nothing it reads: the
// sink never gets more than size-offset bytes, and a message never more than blobMaxMessage.
func (t *blobTransfer) readResponse(r io.Reader, offset, size int64) error {
	var header [9]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	value := binary.BigEndian.Uint64(header[1:])
	if status := header[0]; status != blobStatusOK {
		return refusal(r, status, value)
	}
	if value != uint64(size) {
		return fmt.Errorf("peer's blob has %d bytes, want %d", value, size)
	}
	return t.receive(r, offset, size)
}

// receive copies the bytes from offset to size, read from r, into the sink.
func (t *blobTransfer) receive(r io.Reader, offset, size int64) error {
	buf := blobBuffers.Get().(*[]byte)
	defer blobBuffers.Put(buf)
	done := offset
	for done < size {
		chunk := (*buf)[:min(int64(len(*buf)), size-done)]
		n, readErr := io.ReadAtLeast(r, chunk, min(len(chunk), blobSinkSlice))
		if n > 0 {
			// Keep what arrived even when the read failed: the next fetch resumes after it.
			written, err := t.sink.Write(chunk[:n])
			done += int64(written)
			if err == nil && written < n {
				err = io.ErrShortWrite
			}
			if err != nil {
				return fmt.Errorf("write to sink: %w", err)
			}
			if t.progress != nil {
				t.progress(done)
			}
		}
		switch {
		case readErr == io.EOF || readErr == io.ErrUnexpectedEOF:
			return fmt.Errorf("stream ended %d bytes short: %w", size-done, io.ErrUnexpectedEOF)
		case readErr != nil:
			return readErr
		}
	}
	return nil
}

// refusal reads a refusal's message from r and turns it into an error.
func refusal(r io.Reader, status byte, length uint64) error {
	message := make([]byte, min(length, blobMaxMessage))
	n, _ := io.ReadFull(r, message)
	text := fmt.Sprintf("peer refused: %q", message[:n])
	switch status {
	case blobStatusNotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, text)
	case blobStatusBadRange:
		return fmt.Errorf("%w: %s", ErrRange, text)
	case blobStatusBusy:
		return fmt.Errorf("%w: %s", ErrBusy, text)
	default:
		return fmt.Errorf("status %d: %s", status, text)
	}
}

// Read reads from the stream, allowing it the idle timeout to deliver something.
func (t *blobTransfer) Read(p []byte) (int, error) {
	t.stream.SetReadDeadline(time.Now().Add(t.idle))
	n, err := t.stream.Read(p)
	if isTimeout(err) {
		err = fmt.Errorf("peer sent nothing for %v: %w", t.idle, err)
	}
	return n, err
}

// isTimeout reports whether err is a deadline's timeout; yamux's does not wrap
// os.ErrDeadlineExceeded, so ask the error itself.
func isTimeout(err error) bool {
	var timeout interface{ Timeout() bool }
	return errors.As(err, &timeout) && timeout.Timeout()
}
