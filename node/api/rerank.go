package api

import (
	"cmp"
	"context"
	"slices"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/api/internal/request"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Rerank implements pb.InferenceServiceServer: it runs the request where the router says.
func (s *InferenceService) Rerank(ctx context.Context, req *pb.RerankRequest) (*pb.RerankResponse, error) {
	if req.GetModel() == "" {
		return nil, request.Invalid("model is empty: name a rerank model (syn4pse models list shows them)")
	}
	if len(req.GetDocuments()) == 0 {
		return nil, request.Invalid("documents is empty: send at least one document to rank")
	}
	if req.GetTopN() < 0 {
		return nil, request.Invalid("top_n %d: want a positive number, or 0 for every document", req.GetTopN())
	}
	if err := s.checkRerank(ctx, req); err != nil {
		return nil, err
	}
	if s.Router == nil {
		return s.localRerank(ctx, req)
	}
	resp, err := s.Router.Rerank(ctx, req, s.localRerank)
	return resp, request.Status(err)
}

func (s *InferenceService) localRerank(ctx context.Context, req *pb.RerankRequest) (*pb.RerankResponse, error) {
	model := req.GetModel()
	lease, err := request.Acquire(ctx, s.Models, model, "rerank", "Rerank and /v1/rerank", req.GetKeepAlive())
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	rr := lease.Reranker()
	if rr == nil {
		return nil, request.Invalid("%q is not a rerank model", model)
	}
	res, err := rr.Rerank(ctx, engine.RerankRequest{Query: req.GetQuery(), Documents: req.GetDocuments(), Truncate: req.GetTruncate()})
	if err != nil {
		return nil, request.Status(err)
	}
	results := make([]*pb.RerankResult, len(res.Scores))
	for i, score := range res.Scores {
		results[i] = &pb.RerankResult{Index: int32(i), RelevanceScore: score}
	}
	slices.SortStableFunc(results, func(a, b *pb.RerankResult) int { return cmp.Compare(b.GetRelevanceScore(), a.GetRelevanceScore()) })
	if n := int(req.GetTopN()); n > 0 && n < len(results) {
		results = results[:n]
	}
	return &pb.RerankResponse{Model: model, Results: results, PromptTokens: int32(res.PromptTokens),
		ProcessMs: float64(res.ProcessDuration.Microseconds()) / 1000, ServedBy: s.NodeID}, nil
}
