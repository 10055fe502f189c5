package engine

import (
	"context"
	"fmt"
	"time"
)

// EmbedInput is one input to embed: text, or token ids of the model's vocabulary when Tokens
// is not nil (taken as they are: no special tokens are added).
type EmbedInput struct {
	Text   string
	Tokens []int32
}

// EmbedRequest is a set of inputs embedded together.
type EmbedRequest struct {
	Inputs []EmbedInput
	// Normalize scales each vector to unit length (L2).
	Normalize bool
	// Truncate cuts an input longer than the model's context to its first tokens instead of
	// failing with an InputTooLongError.
	Truncate bool
}

// EmbedResult is the vectors of a request, one per input in order.
type EmbedResult struct {
	Embeddings [][]float32
	// PromptTokens counts the tokens of every input, after truncation.
	PromptTokens    int
	ProcessDuration time.Duration
}

// InputTooLongError says which input of an embeddings request exceeds the model's context.
// It wraps ErrInvalidRequest.
type InputTooLongError struct {
	Index  int
	Tokens int
	Limit  int
}

// Error names the input, its size, the limit and the fix.
func (e *InputTooLongError) Error() string {
	return fmt.Sprintf("input %d is %d tokens but the model embeds at most %d; shorten it, ask for truncation or raise context_length", e.Index, e.Tokens, e.Limit)
}

// Unwrap makes errors.Is(err, ErrInvalidRequest) true.
func (e *InputTooLongError) Unwrap() error { return ErrInvalidRequest }

// Embedder is a loaded embeddings model. Embed may be called from many goroutines.
type Embedder interface {
	Model
	// Embed returns one vector of ModelInfo.EmbeddingLength floats per input. It stops when
	// ctx is cancelled, returning ctx's error.
	Embed(ctx context.Context, req EmbedRequest) (EmbedResult, error)
}

// EmbedderEngine loads embeddings models.
type EmbedderEngine interface {
	Name() string
	LoadEmbedder(ctx context.Context, opts LoadOptions) (Embedder, error)
}
