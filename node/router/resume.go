package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	gproto "google.golang.org/protobuf/proto"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// A chat or completion stream survives its node: when the peer serving it fails after text
// reached the client, the router sends the request again to the next node of the plan (or runs
// it here) with the text so far as the start of the reply — a chat's final assistant turn left
// open (ChatRequest.continue_final_message), a completion's prompt extended — and splices the
// continuation into the client's stream: the same id, no text twice or lost, max_tokens less
// what was generated, Final.served_by listing the nodes ("B,C"), and the usage counting every
// part: the last part's prompt tokens (the prompt and the reply so far, as that node read them)
// and the completion tokens of all parts. A stop string cannot span the seam: a node holds back
// text that could begin one, so the text the client has never ends inside a stop string, and
// the held-back tokens are generated again by the next node.
//
// A stream is not continued when it asks for what a continuation cannot keep whole: n > 1,
// logprobs, tools, or a constrained response format (a grammar would start over); nor when it
// is pinned to a node or local-only, when the client went away, or when the node's error is an
// answer about the request rather than a failure. Those end with the error, as before.

// midStreamError is a peer's failure after its events reached the client: the stream may be
// continued elsewhere. It reads as its status error.
type midStreamError struct {
	peer string
	err  error
}

func (e *midStreamError) Error() string { return e.err.Error() }
func (e *midStreamError) Unwrap() error { return e.err }

// GRPCStatus makes the error map to its gRPC status wherever it is not continued.
func (e *midStreamError) GRPCStatus() *status.Status { return status.Convert(e.err) }

// generation is a streamed chat or completion request the router can continue.
type generation struct {
	model     string
	routing   *pb.Routing
	maxTokens int32
	// resumable is false for requests a continuation cannot serve whole (see above).
	resumable bool
	// from returns the request continued after text (the original when text is ""), with
	// maxTokens, as this node and a peer run it.
	from func(text string, maxTokens int32) (func(context.Context, Sender) error, remoteCall[pb.GenerateResponse])
}

func chatGeneration(req *pb.ChatRequest, runLocal func(context.Context, *pb.ChatRequest, Sender) error) generation {
	tools := len(req.GetTools()) > 0 && req.GetToolChoice().GetMode() != "none"
	return generation{
		model: req.GetModel(), routing: req.GetRouting(), maxTokens: req.GetSampling().GetMaxTokens(),
		resumable: !tools && resumableRequest(req.GetRouting(), req.GetSampling(), req.GetResponseFormat()),
		from: func(text string, maxTokens int32) (func(context.Context, Sender) error, remoteCall[pb.GenerateResponse]) {
			next := req
			if text != "" {
				next = chatContinuation(req, text, maxTokens)
			}
			return func(ctx context.Context, s Sender) error { return runLocal(ctx, next, s) },
				func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (grpc.ServerStreamingClient[pb.GenerateResponse], error) {
					fwd := gproto.Clone(next).(*pb.ChatRequest)
					fwd.Routing = routing
					return pb.NewInferenceServiceClient(conn).Chat(ctx, fwd)
				}
		},
	}
}

func completeGeneration(req *pb.CompleteRequest, runLocal func(context.Context, *pb.CompleteRequest, Sender) error) generation {
	return generation{
		model: req.GetModel(), routing: req.GetRouting(), maxTokens: req.GetSampling().GetMaxTokens(),
		resumable: resumableRequest(req.GetRouting(), req.GetSampling(), req.GetResponseFormat()),
		from: func(text string, maxTokens int32) (func(context.Context, Sender) error, remoteCall[pb.GenerateResponse]) {
			next := req
			if text != "" {
				next = gproto.Clone(req).(*pb.CompleteRequest)
				next.Prompt += text
				setMaxTokens(&next.Sampling, maxTokens)
			}
			return func(ctx context.Context, s Sender) error { return runLocal(ctx, next, s) },
				func(ctx context.Context, conn grpc.ClientConnInterface, routing *pb.Routing) (grpc.ServerStreamingClient[pb.GenerateResponse], error) {
					fwd := gproto.Clone(next).(*pb.CompleteRequest)
					fwd.Routing = routing
					return pb.NewInferenceServiceClient(conn).Complete(ctx, fwd)
				}
		},
	}
}

// resumableRequest tells whether a stream with these settings may be continued on another node.
func resumableRequest(routing *pb.Routing, sp *pb.SamplingParams, rf *pb.ResponseFormat) bool {
	switch {
	case routing.GetNode() != "" || routing.GetLocalOnly():
		return false // the client chose the node
	case sp.GetN() > 1 || sp.GetLogprobs():
		return false
	}
	t := rf.GetType()
	return t == pb.ResponseFormat_TYPE_UNSPECIFIED || t == pb.ResponseFormat_TYPE_TEXT
}

// chatContinuation is req with text as the start of the assistant's reply: appended to the
// final assistant turn when the client already left one open, else as a new open turn.
func chatContinuation(req *pb.ChatRequest, text string, maxTokens int32) *pb.ChatRequest {
	next := gproto.Clone(req).(*pb.ChatRequest)
	msgs := next.GetMessages()
	if last := len(msgs) - 1; next.GetContinueFinalMessage() && last >= 0 && msgs[last].GetRole() == "assistant" {
		if len(msgs[last].GetParts()) > 0 {
			msgs[last].Parts = append(msgs[last].Parts, &pb.ContentPart{Part: &pb.ContentPart_Text{Text: text}})
		} else {
			msgs[last].Content += text
		}
	} else {
		next.Messages = append(msgs, &pb.Message{Role: "assistant", Content: text})
	}
	next.ContinueFinalMessage = true
	setMaxTokens(&next.Sampling, maxTokens)
	return next
}

func setMaxTokens(sp **pb.SamplingParams, maxTokens int32) {
	if maxTokens <= 0 {
		return // unlimited stays unlimited
	}
	if *sp == nil {
		*sp = &pb.SamplingParams{}
	}
	(*sp).MaxTokens = &maxTokens
}

// generate routes g and continues its stream on another node each time its peer fails
// mid-stream, as long as one can take it.
func (r *Router) generate(ctx context.Context, g generation, send Sender) error {
	sp := &splice{send: send}
	local, remote := g.from("", g.maxTokens)
	err := route(ctx, r, g.model, g.routing, sp.relay, local, remote)
	failed := map[string]bool{}
	for {
		var mid *midStreamError
		if !errors.As(err, &mid) || !g.resumable || ctx.Err() != nil {
			return err
		}
		if sp.ended {
			return nil // the peer failed after its final event: the client has the whole answer
		}
		failed[mid.peer] = true
		sp.nextPart()
		remaining := int32(0)
		if g.maxTokens > 0 {
			if remaining = g.maxTokens - int32(sp.generated); remaining <= 0 {
				return sp.endAtLimit()
			}
		}
		slog.Warn("peer failed mid-stream; continuing the reply on another node", "peer", mid.peer, "model", g.model,
			"id", sp.id, "tokens", sp.generated)
		local, remote := g.from(sp.text.String(), remaining)
		cerr := r.continueOn(ctx, g, failed, sp.relay, local, remote)
		if cerr == nil {
			r.reportForward(ForwardResumed)
		}
		if !sp.started && cerr != nil && ctx.Err() == nil {
			return status.Errorf(codes.Unavailable, "%s; no other node could continue it: %v", mid.err.Error(), cerr)
		}
		err = cerr
	}
}

// continueOn runs a continuation on the first node of the plan that takes it, skipping the
// peers that failed this stream already; like route, a node that fails before its first event
// passes it to the next.
func (r *Router) continueOn(ctx context.Context, g generation, failed map[string]bool, send Sender,
	local func(context.Context, Sender) error, remote remoteCall[pb.GenerateResponse]) error {
	targets, err := r.plan(g.model, g.routing)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range targets {
		if t.local {
			started, err := runLocal(ctx, local, send)
			if err == nil || started || ctx.Err() != nil {
				return err
			}
			errs = append(errs, fmt.Errorf("this node: %w", err))
			continue
		}
		if failed[t.peer.Peer] {
			continue
		}
		final, err := forward(ctx, r, t.peer, g.routing, send, remote)
		r.reportForward(forwardOutcome(ctx, final, err))
		if err == nil || final || ctx.Err() != nil {
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.peer.Peer, err))
	}
	if len(errs) == 0 {
		return errors.New("no other node serves the model")
	}
	return errors.Join(errs...)
}

// splice passes a stream's events to the client and joins its parts into one stream: every
// event keeps the first part's id, and after a continuation the Final names every node and
// counts every part's tokens.
type splice struct {
	send     Sender
	id       string
	model    string
	servedBy []string
	text     strings.Builder
	// generated counts the tokens of the finished parts; part those of the running one, from
	// its deltas' counts (a delta each where a node does not count).
	generated, part int
	continued       bool
	// started says whether the running part sent an event; ended whether a Final went out.
	started, ended bool
}

func (s *splice) relay(ev *pb.GenerateResponse) error {
	s.started = true
	if s.id == "" {
		s.id, s.model = ev.GetId(), ev.GetModel()
	}
	ev.Id = s.id
	if by := ev.GetServedBy(); by != "" && (len(s.servedBy) == 0 || s.servedBy[len(s.servedBy)-1] != by) {
		s.servedBy = append(s.servedBy, by)
	}
	if d := ev.GetDelta(); d != nil {
		s.text.WriteString(d.GetText())
		switch n := int(d.GetCompletionTokens()); {
		case n > 0:
			s.part = n
			d.CompletionTokens = int32(s.generated + n) // counts from the stream's start, for a hop upstream
		case d.GetText() != "":
			s.part++
		}
	}
	if f := ev.GetFinal(); f != nil {
		s.ended = true
		if s.continued {
			s.joinFinal(f)
		}
	}
	return s.send(ev)
}

// nextPart starts a continuation: the running part's tokens are done.
func (s *splice) nextPart() {
	s.generated += s.part
	s.part, s.continued, s.started = 0, true, false
}

// joinFinal makes the last part's Final the stream's: all its nodes, all its tokens.
func (s *splice) joinFinal(f *pb.Final) {
	f.ServedBy = strings.Join(s.servedBy, ",")
	if f.Usage == nil {
		f.Usage = &pb.Usage{}
	}
	f.Usage.CompletionTokens += int32(s.generated)
	f.Usage.TotalTokens = f.Usage.PromptTokens + f.Usage.CompletionTokens
}

// endAtLimit ends a stream whose node failed after generating max_tokens but before its Final:
// there is nothing left to continue.
func (s *splice) endAtLimit() error {
	f := &pb.Final{FinishReason: pb.FinishReason_FINISH_REASON_LENGTH, Usage: &pb.Usage{}}
	s.joinFinal(f)
	return s.send(&pb.GenerateResponse{Id: s.id, Model: s.model, Event: &pb.GenerateResponse_Final{Final: f}})
}
