package api

import (
	"context"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/api/internal/request"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Embed implements pb.InferenceServiceServer: it runs the request where the router says.
func (s *InferenceService) Embed(ctx context.Context, req *pb.EmbedRequest) (*pb.EmbedResponse, error) {
	if req.GetModel() == "" {
		return nil, request.Invalid("model is empty: name an embeddings model (syn4pse models list shows them)")
	}
	if len(req.GetInputs()) == 0 {
		return nil, request.Invalid("inputs is empty: send at least one text or list of token ids")
	}
	if req.GetDimensions() < 0 {
		return nil, request.Invalid("dimensions %d: want a positive number, or 0 for the model's length", req.GetDimensions())
	}
	if err := s.checkEmbed(ctx, req); err != nil {
		return nil, err
	}
	if s.Router == nil {
		return s.localEmbed(ctx, req)
	}
	resp, err := s.Router.Embed(ctx, req, s.localEmbed)
	return resp, request.Status(err)
}

func (s *InferenceService) localEmbed(ctx context.Context, req *pb.EmbedRequest) (*pb.EmbedResponse, error) {
	model := req.GetModel()
	lease, err := request.Acquire(ctx, s.Models, model, "embeddings", "Embed and /v1/embeddings", req.GetKeepAlive())
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	emb := lease.Embedder()
	if emb == nil {
		return nil, request.Invalid("%q is not an embeddings model", model)
	}
	// No GGUF key marks a Matryoshka model, whose leading dimensions alone make a good
	// vector: shortening any other model's vectors would silently spoil them.
	if d := int(req.GetDimensions()); d != 0 && d != emb.Info().EmbeddingLength {
		return nil, request.Invalid("dimensions %d: %q makes vectors of %d dimensions and is not known to support shorter ones; leave dimensions out", d, model, emb.Info().EmbeddingLength)
	}
	in := engine.EmbedRequest{Normalize: req.GetNormalize(), Truncate: req.GetTruncate()}
	in.Inputs = make([]engine.EmbedInput, len(req.GetInputs()))
	for i, x := range req.GetInputs() {
		if t := x.GetTokens(); t != nil {
			in.Inputs[i].Tokens = append(make([]int32, 0, len(t.GetIds())), t.GetIds()...)
		} else {
			in.Inputs[i].Text = x.GetText()
		}
	}
	res, err := emb.Embed(ctx, in)
	if err != nil {
		return nil, request.Status(err)
	}
	resp := &pb.EmbedResponse{Model: model, PromptTokens: int32(res.PromptTokens),
		ProcessMs: float64(res.ProcessDuration.Microseconds()) / 1000, ServedBy: s.NodeID}
	resp.Embeddings = make([]*pb.Embedding, len(res.Embeddings))
	for i, v := range res.Embeddings {
		resp.Embeddings[i] = &pb.Embedding{Values: v}
	}
	return resp, nil
}
