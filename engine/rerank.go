package engine

import (
	"context"
	"time"
)

// RerankRequest asks how relevant each document is to a query.
type RerankRequest struct {
	Query     string
	Documents []string
	// Truncate cuts a query-document pair longer than the model's context instead of failing
	// with an InputTooLongError (whose Index is then the document's).
	Truncate bool
}

// RerankResult holds one score per document, in the request's order: higher is more relevant.
// Scores are the model's raw classifier outputs, as llama.cpp's server reports them.
type RerankResult struct {
	Scores          []float32
	PromptTokens    int
	ProcessDuration time.Duration
}

// Reranker is a loaded cross-encoder reranker. Rerank may be called from many goroutines.
type Reranker interface {
	Model
	// Rerank scores each document against the query. It stops when ctx is cancelled,
	// returning ctx's error.
	Rerank(ctx context.Context, req RerankRequest) (RerankResult, error)
}

// RerankerEngine loads rerankers.
type RerankerEngine interface {
	Name() string
	LoadReranker(ctx context.Context, opts LoadOptions) (Reranker, error)
}
