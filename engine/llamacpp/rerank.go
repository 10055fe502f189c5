package llamacpp

import (
	"context"
	"fmt"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// reranker is a cross-encoder (a GGUF with rank pooling: a classification head on the pooled
// vector): each query-document pair is one sequence, packed into decodes as embeddings are.
type reranker struct {
	*embedder
}

// LoadReranker implements engine.RerankerEngine.
func (*Engine) LoadReranker(ctx context.Context, opts engine.LoadOptions) (engine.Reranker, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Pooling != "" {
		return nil, fmt.Errorf("pooling %q: a reranker pools as its GGUF says (rank); leave pooling out", opts.Pooling)
	}
	m, err := native.LoadModel(opts.Path, native.ModelParams{GPULayers: opts.GPULayers, MainGPU: opts.MainGPU})
	if err != nil {
		return nil, err
	}
	e, err := newEmbedder(m, native.PoolingUnspecified, true, opts)
	if err != nil {
		m.Close()
		return nil, err
	}
	return reranker{e}, nil
}

// Rerank implements engine.Reranker. A pair is the query's tokens with the model's special
// tokens ([CLS] query [SEP]), then the document's, then a separator, as llama.cpp's server
// builds it.
func (r reranker) Rerank(ctx context.Context, req engine.RerankRequest) (engine.RerankResult, error) {
	if len(req.Documents) == 0 {
		return engine.RerankResult{}, fmt.Errorf("%w: no documents to rank", engine.ErrInvalidRequest)
	}
	began := time.Now()
	r.queued.Add(1)
	r.mu.Lock()
	r.queued.Add(-1)
	defer r.mu.Unlock()
	if r.closed {
		return engine.RerankResult{}, engine.ErrClosed
	}
	pairs, err := r.pairsLocked(req)
	if err != nil {
		return engine.RerankResult{}, err
	}
	embedReq := engine.EmbedRequest{Inputs: pairs, Truncate: req.Truncate}
	vecs, total, err := r.runLocked(ctx, embedReq)
	if err != nil {
		return engine.RerankResult{}, err
	}
	scores := make([]float32, len(vecs))
	for i, v := range vecs {
		scores[i] = v[0]
	}
	return engine.RerankResult{Scores: scores, PromptTokens: total, ProcessDuration: time.Since(began)}, nil
}

// pairsLocked tokenizes the query once and each document after it.
func (r reranker) pairsLocked(req engine.RerankRequest) ([]engine.EmbedInput, error) {
	query, err := r.native.Tokenize(req.Query, true, false)
	if err != nil {
		return nil, fmt.Errorf("%w: query: %v", engine.ErrInvalidRequest, err)
	}
	sep := r.native.SEP()
	if sep < 0 {
		sep = r.native.EOS()
	}
	pairs := make([]engine.EmbedInput, len(req.Documents))
	for i, doc := range req.Documents {
		toks, err := r.native.Tokenize(doc, false, false)
		if err != nil {
			return nil, fmt.Errorf("%w: document %d: %v", engine.ErrInvalidRequest, i, err)
		}
		pair := append(append([]int32(nil), query...), toks...)
		if sep >= 0 {
			pair = append(pair, sep)
		}
		pairs[i].Tokens = pair
	}
	return pairs, nil
}
