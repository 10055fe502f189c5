// Package router decides where a request runs: on this node or on which peer of the mesh, and
// fails over to the next candidate when a peer fails before its first token.
//
// The rule, per request:
//  1. A pinned node (routing.node) or local_only is obeyed; a request already forwarded
//     max_hops times runs here.
//  2. Here, when the model is loaded here with a free slot.
//  3. Else the peers announcing the model, best score first (see score; a GPU that holds a
//     large model counts).
//  4. Else here, when the model is declared here (it queues for a slot or loads).
//  5. Else NOT_FOUND naming the model.
//
// Candidates are tried in order; a peer that fails or is busy (RESOURCE_EXHAUSTED: its queue, or
// its limit for this node's calls) before the first event is skipped and the next one tried
// (this node last, when it has the model), and so is this node when its queue for the model is
// full (RESOURCE_EXHAUSTED, at once): a busy node's requests spill to its peers. After the first
// event, an error reaches the client as a stream error, except that a chat or completion whose
// peer fails mid-stream is continued on the next node from the text generated so far, as one
// stream (resume.go). A reply over a gRPC message size limit (server.grpc_max_message) ends the
// request with OUT_OF_RANGE: any other node would send the same reply (toolarge.go). A peer that fails router.ban_after times in a row is banned (Bans) and
// left out of step 3 for router.ban_duration; a busy answer is no failure.
package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	gproto "google.golang.org/protobuf/proto"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// LocalModel is what the router needs to know of a model on this node.
type LocalModel struct {
	// Declared is true when this node has the model (loaded or not).
	Declared bool
	// Unavailable is true when the model is declared here but cannot serve (a missing or
	// corrupt file); a request goes here only when no peer serves it, to get the reason.
	Unavailable bool
	Loaded      bool
	// FreeSlots counts sequences free for a new request now.
	FreeSlots int
}

// Candidate is a peer announcing a model.
type Candidate struct {
	// Peer is the peer's ID, as Dial takes it.
	Peer            string
	Name            string
	Loaded          bool
	FreeSlots       int
	QueueDepth      int
	RTT             time.Duration
	TokensPerSecond float64
	RecentFailures  int
	// ModelBytes is the model's file size, as the peer announces it.
	ModelBytes int64
	// GPUBytes is the memory of the peer's largest GPU, 0 on a CPU-only peer.
	GPUBytes int64
}

// Peers is the view of the mesh the router needs; the node backs it with the peer table.
type Peers interface {
	// WithModel lists the peers that announce model.
	WithModel(model string) []Candidate
	// Lookup finds a peer by peer ID or node name.
	Lookup(node string) (Candidate, bool)
	// Models lists the names of the models peers announce.
	Models() []string
	// RecordFailure and RecordSuccess feed the recent-failures part of the score.
	RecordFailure(peer string)
	RecordSuccess(peer string)
}

// Sender receives a generation's events in order.
type Sender = func(*pb.GenerateResponse) error

// Router routes generation requests.
type Router struct {
	// Self is this node's peer ID.
	Self string
	// MaxHops is how many times a request may be forwarded.
	MaxHops int
	// Local reports on a model of this node.
	Local func(model string) LocalModel
	// LocalModels lists the models of this node that can serve, for error messages.
	LocalModels func() []string
	// Peers is nil on a standalone node.
	Peers Peers
	// Dial returns a gRPC connection to a peer.
	Dial func(ctx context.Context, peer string) (grpc.ClientConnInterface, error)
	// OnForward, when set, is told the outcome of each attempt to forward a request to a peer
	// (ForwardOK ...), and ForwardLocalFallback when a request runs here after peers failed.
	OnForward func(outcome string)
	// Bans are the peers left out for failing repeatedly; nil bans nobody.
	Bans *Bans
}

// Outcomes of forwarding a request, as OnForward reports them.
const (
	// ForwardOK: the peer answered the whole request.
	ForwardOK = "ok"
	// ForwardPeerFault: the peer was unreachable or failed before answering; the next
	// candidate was tried.
	ForwardPeerFault = "peer_fault"
	// ForwardBusy: the peer's queue for the model was full; the next candidate was tried.
	ForwardBusy = "busy"
	// ForwardBroken: the peer failed after its first event; the client got a stream error.
	ForwardBroken = "broken"
	// ForwardRejected: the peer answered with an error about the request itself (a bad
	// request, a prompt too long), which the client got.
	ForwardRejected = "rejected"
	// ForwardCanceled: the client went away while the peer served it.
	ForwardCanceled = "canceled"
	// ForwardLocalFallback: every peer tried failed and the request ran on this node.
	ForwardLocalFallback = "local_fallback"
	// ForwardResumed: a stream whose peer failed mid-stream (broken) was continued on another
	// node, and the client got one whole stream.
	ForwardResumed = "resumed"
	// ForwardTooLarge: the peer's reply (or the request) was over a gRPC message size limit
	// (server.grpc_max_message); every node would give the same, so none other was tried and
	// the client got OUT_OF_RANGE.
	ForwardTooLarge = "too_large"
)

// ForwardOutcomes lists every outcome OnForward reports.
var ForwardOutcomes = []string{ForwardOK, ForwardPeerFault, ForwardBusy, ForwardBroken, ForwardRejected, ForwardCanceled, ForwardLocalFallback, ForwardResumed, ForwardTooLarge}

// reportForward tells OnForward an outcome.
func (r *Router) reportForward(outcome string) {
	if r.OnForward != nil {
		r.OnForward(outcome)
	}
}

// forwardOutcome classifies what forward returned.
func forwardOutcome(ctx context.Context, final bool, err error) string {
	switch {
	case err == nil:
		return ForwardOK
	case ctx.Err() != nil:
		return ForwardCanceled
	case errors.As(err, new(*tooLargeError)):
		return ForwardTooLarge
	case !final && status.Code(err) == codes.ResourceExhausted:
		return ForwardBusy
	case !final:
		return ForwardPeerFault
	case isPeerFault(status.Code(err)):
		return ForwardBroken
	}
	return ForwardRejected
}

// ErrNoNode means no node of the mesh serves the model.
var ErrNoNode = errors.New("no node serves the model")

// target is one place a request may run: this node or a peer.
type target struct {
	local bool
	peer  Candidate
}

// plan orders the places a request for model may run.
func (r *Router) plan(model string, routing *pb.Routing) ([]target, error) {
	local := r.Local(model)
	here := target{local: true}
	if r.Peers == nil || routing.GetLocalOnly() || int(routing.GetHops()) >= r.MaxHops {
		if !local.Declared {
			return nil, r.notFound(model, routing)
		}
		return []target{here}, nil
	}
	if pin := routing.GetNode(); pin != "" {
		if pin == r.Self {
			return []target{here}, nil
		}
		c, ok := r.Peers.Lookup(pin)
		if !ok {
			return nil, status.Errorf(codes.NotFound, "node %q is not in this node's peer table (syn4pse peers lists them)", pin)
		}
		return []target{{peer: c}}, nil
	}
	if local.Loaded && local.FreeSlots > 0 {
		return []target{here}, nil
	}
	peers := r.Peers.WithModel(model)
	sort.SliceStable(peers, func(i, j int) bool { return score(peers[i]) > score(peers[j]) })
	var targets []target
	banned := 0
	for _, c := range peers {
		switch {
		case c.Peer == r.Self:
		case r.Bans.Banned(c.Peer):
			banned++
		default:
			targets = append(targets, target{peer: c})
		}
	}
	switch {
	case local.Declared && local.Unavailable:
		if len(targets) == 0 {
			targets = append(targets, here) // its error says why the model cannot serve
		}
	case local.Declared && local.Loaded && (len(targets) == 0 || !targets[0].peer.Loaded):
		// Busy here: still better than a peer that has the model only on disk.
		targets = append([]target{here}, targets...)
	case local.Declared:
		targets = append(targets, here)
	}
	if len(targets) == 0 && banned > 0 {
		return nil, status.Errorf(codes.Unavailable, "the nodes that serve %q failed repeatedly and are left out for a while (router.ban_after, router.ban_duration); retry later", model)
	}
	if len(targets) == 0 {
		return nil, r.notFound(model, routing)
	}
	return targets, nil
}

// LargeModelBytes is the size from which a model runs better on a GPU node: below it a CPU
// decodes at a speed people accept, above it a GPU is several times faster.
const LargeModelBytes = 1 << 30

// score ranks a peer for a request: having the model loaded outweighs everything; then, for a
// large model, a GPU that holds it (more than any number of free slots); then free slots, a short queue, a
// short round trip and speed; each recent failure costs more than a free slot gains.
func score(c Candidate) float64 {
	s := 0.0
	if c.Loaded {
		s += 1000
	}
	if c.ModelBytes >= LargeModelBytes && c.GPUBytes >= c.ModelBytes {
		s += 250
	}
	s += 50 * float64(min(c.FreeSlots, 4))
	s -= 20 * float64(c.QueueDepth)
	s -= float64(c.RTT.Milliseconds()) / 10
	s += min(c.TokensPerSecond, 200) / 20
	s -= 300 * float64(c.RecentFailures)
	return s
}

func (r *Router) notFound(model string, routing *pb.Routing) error {
	var names []string
	if r.LocalModels != nil {
		names = r.LocalModels()
	}
	where := "this node"
	if r.Peers != nil && !routing.GetLocalOnly() {
		where = "any node of the mesh"
		names = append(names, r.Peers.Models()...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	available := "none (add a model to syn4pse.toml)"
	if len(names) > 0 {
		available = strings.Join(names, ", ")
	}
	return fmt.Errorf("%w: %q is not a model of %s; available: %s", ErrNoNode, model, where, available)
}

// Chat runs req where plan says; runLocal serves it on this node. A stream whose peer fails
// mid-stream goes on on another node (resume.go).
func (r *Router) Chat(ctx context.Context, req *pb.ChatRequest, send Sender, runLocal func(context.Context, *pb.ChatRequest, Sender) error) error {
	return r.generate(ctx, chatGeneration(req, runLocal), send)
}

// Complete runs req where plan says; runLocal serves it on this node. A stream whose peer fails
// mid-stream goes on on another node (resume.go).
func (r *Router) Complete(ctx context.Context, req *pb.CompleteRequest, send Sender, runLocal func(context.Context, *pb.CompleteRequest, Sender) error) error {
	return r.generate(ctx, completeGeneration(req, runLocal), send)
}

// Transcribe runs a transcription where plan says; runLocal serves it on this node. audio
// returns a reader of the request's audio from its start, once per node tried.
func (r *Router) Transcribe(ctx context.Context, cfg *pb.TranscribeConfig, audio func() AudioReader, send func(*pb.TranscribeResponse) error, runLocal func(context.Context, func(*pb.TranscribeResponse) error) error) error {
	return route(ctx, r, cfg.GetModel(), cfg.GetRouting(), send, runLocal,
		func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (grpc.ServerStreamingClient[pb.TranscribeResponse], error) {
			stream, err := pb.NewInferenceServiceClient(conn).Transcribe(ctx)
			if err != nil {
				return nil, err
			}
			fwd := gproto.Clone(cfg).(*pb.TranscribeConfig)
			fwd.Routing = routing
			if err := stream.Send(&pb.TranscribeRequest{Config: fwd}); err != nil {
				return nil, err
			}
			// The audio goes on in the background while the caller reads the events; this
			// goroutine ends with the audio or with ctx, which forward cancels when it returns.
			go pumpAudio(ctx, audio(), stream)
			return stream, nil
		})
}

// AudioReader gives the pieces of a request's audio in order: Next blocks until the next piece
// arrives and returns io.EOF after the last.
type AudioReader interface {
	Next(ctx context.Context) ([]byte, error)
}

func pumpAudio(ctx context.Context, audio AudioReader, stream grpc.BidiStreamingClient[pb.TranscribeRequest, pb.TranscribeResponse]) {
	for {
		piece, err := audio.Next(ctx)
		if errors.Is(err, io.EOF) {
			stream.CloseSend()
			return
		}
		if err != nil {
			return // the request ends: ctx is cancelled, and with it the stream
		}
		if err := stream.Send(&pb.TranscribeRequest{Audio: piece}); err != nil {
			return // the peer ended the call; Recv reports why
		}
	}
}

// Synthesize runs a speech synthesis where plan says; runLocal serves it on this node.
func (r *Router) Synthesize(ctx context.Context, req *pb.SynthesizeRequest, send func(*pb.SynthesizeResponse) error, runLocal func(context.Context, *pb.SynthesizeRequest, func(*pb.SynthesizeResponse) error) error) error {
	return route(ctx, r, req.GetModel(), req.GetRouting(), send,
		func(ctx context.Context, s func(*pb.SynthesizeResponse) error) error { return runLocal(ctx, req, s) },
		func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (grpc.ServerStreamingClient[pb.SynthesizeResponse], error) {
			fwd := gproto.Clone(req).(*pb.SynthesizeRequest)
			fwd.Routing = routing
			return pb.NewInferenceServiceClient(conn).Synthesize(ctx, fwd)
		})
}

// remoteCall starts a request on a peer and returns the stream of its events.
type remoteCall[E any] func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (grpc.ServerStreamingClient[E], error)

func route[E any](ctx context.Context, r *Router, model string, routing *pb.Routing, send func(*E) error, local func(context.Context, func(*E) error) error, remote remoteCall[E]) error {
	targets, err := r.plan(model, routing)
	if err != nil {
		return err
	}
	var errs []error
	busy := false
	for i, t := range targets {
		if t.local {
			if i > 0 {
				r.reportForward(ForwardLocalFallback)
			}
			started, err := runLocal(ctx, local, send)
			if err == nil || started || i == len(targets)-1 || status.Code(err) != codes.ResourceExhausted || ctx.Err() != nil {
				return err
			}
			slog.DebugContext(ctx, "this node's queue is full; trying a peer", "model", model)
			busy = true
			errs = append(errs, fmt.Errorf("this node: %w", err))
			continue
		}
		final, err := forward(ctx, r, t.peer, routing, send, remote)
		r.reportForward(forwardOutcome(ctx, final, err))
		if err == nil || final || ctx.Err() != nil {
			return err
		}
		if status.Code(err) == codes.ResourceExhausted {
			slog.InfoContext(ctx, "peer busy; trying the next", "peer", t.peer.Peer, "model", model, "err", err)
			busy = true
		} else {
			slog.WarnContext(ctx, "peer failed before answering; trying the next", "peer", t.peer.Peer, "model", model, "err", err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.peer.Peer, err))
	}
	if busy {
		return status.Errorf(codes.ResourceExhausted, "every node that serves %q is busy or failed; retry later: %v", model, errors.Join(errs...))
	}
	return status.Errorf(codes.Unavailable, "every node that serves %q failed: %v", model, errors.Join(errs...))
}

// runLocal serves a request on this node; started says whether an event reached send.
func runLocal[E any](ctx context.Context, local func(context.Context, func(*E) error) error, send func(*E) error) (started bool, err error) {
	err = local(ctx, func(ev *E) error {
		started = true
		return send(ev)
	})
	return started, err
}

// forward relays the request to a peer. final is false when the peer failed before any event
// reached the client, so the request may move to another node.
func forward[E any](ctx context.Context, r *Router, c Candidate, routing *pb.Routing, send func(*E) error, call remoteCall[E]) (final bool, err error) {
	started := false
	conn, err := r.Dial(ctx, c.Peer)
	if err != nil {
		r.recordFault(c.Peer, err)
		return false, err
	}
	fwdRouting := &pb.Routing{Hops: routing.GetHops() + 1}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := call(ctx, conn, fwdRouting)
	if OverSizeLimit(err) {
		return true, &tooLargeError{peer: c.Peer, err: err}
	}
	if err != nil {
		if status.Code(err) != codes.ResourceExhausted {
			r.recordFault(c.Peer, err)
		}
		return false, err
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			r.Peers.RecordSuccess(c.Peer)
			r.Bans.Success(c.Peer)
			return true, nil
		}
		if err != nil {
			if OverSizeLimit(err) {
				return true, &tooLargeError{peer: c.Peer, err: err}
			}
			st := status.Convert(err)
			if !started && st.Code() == codes.ResourceExhausted {
				return false, err // busy, or at its limit for this node's calls: no fault
			}
			if !started && isPeerFault(st.Code()) {
				r.recordFault(c.Peer, err)
				return false, err
			}
			if started && isPeerFault(st.Code()) && ctx.Err() == nil {
				r.recordFault(c.Peer, err)
				return true, &midStreamError{peer: c.Peer, err: status.Errorf(codes.Unavailable, "node %s failed during the request: %s", c.Peer, st.Message())}
			}
			// The peer's own answer (bad request, context too long...): the client's to see.
			return true, err
		}
		started = true
		if err := send(ev); err != nil {
			return true, err
		}
	}
}

// recordFault scores peer down in the peer table and counts the fault towards a ban.
func (r *Router) recordFault(peer string, err error) {
	r.Peers.RecordFailure(peer)
	r.Bans.Fault(peer, err)
}

// isPeerFault tells a failing or unreachable peer from an answer about the request itself. A
// busy peer (RESOURCE_EXHAUSTED) is not failing: the request moves on without holding it
// against the peer.
func isPeerFault(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// Embed runs an embeddings request where plan says; runLocal serves it on this node.
func (r *Router) Embed(ctx context.Context, req *pb.EmbedRequest, runLocal func(context.Context, *pb.EmbedRequest) (*pb.EmbedResponse, error)) (*pb.EmbedResponse, error) {
	return routeUnary(ctx, r, req, req.GetModel(), req.GetRouting(), runLocal,
		func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (*pb.EmbedResponse, error) {
			fwd := gproto.Clone(req).(*pb.EmbedRequest)
			fwd.Routing = routing
			return pb.NewInferenceServiceClient(conn).Embed(ctx, fwd)
		})
}

// Rerank runs a reranking request where plan says; runLocal serves it on this node.
func (r *Router) Rerank(ctx context.Context, req *pb.RerankRequest, runLocal func(context.Context, *pb.RerankRequest) (*pb.RerankResponse, error)) (*pb.RerankResponse, error) {
	return routeUnary(ctx, r, req, req.GetModel(), req.GetRouting(), runLocal,
		func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (*pb.RerankResponse, error) {
			fwd := gproto.Clone(req).(*pb.RerankRequest)
			fwd.Routing = routing
			return pb.NewInferenceServiceClient(conn).Rerank(ctx, fwd)
		})
}

// routeUnary routes a unary call through route as a stream of one response, so that it fails
// over the same way.
func routeUnary[Req, Resp any](ctx context.Context, r *Router, req Req, model string, routing *pb.Routing,
	local func(context.Context, Req) (Resp, error),
	remote func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (Resp, error)) (Resp, error) {
	var resp Resp
	keep := func(res *Resp) error { resp = *res; return nil }
	err := route(ctx, r, model, routing, keep,
		func(ctx context.Context, send func(*Resp) error) error {
			res, err := local(ctx, req)
			if err != nil {
				return err
			}
			return send(&res)
		},
		func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (grpc.ServerStreamingClient[Resp], error) {
			res, err := remote(ctx, conn, routing)
			return &unaryStream[Resp]{resp: &res, err: err}, nil
		})
	return resp, err
}

// unaryStream is a unary call's answer as a stream: its response (or error), then io.EOF.
// Only Recv is used by forward; the embedded ClientStream is nil.
type unaryStream[E any] struct {
	grpc.ClientStream
	resp *E
	err  error
	done bool
}

// Recv returns the response or the call's error once, then io.EOF.
func (u *unaryStream[E]) Recv() (*E, error) {
	if u.done {
		return nil, io.EOF
	}
	u.done = true
	return u.resp, u.err
}
