package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// maxSequences is the most inputs one decode takes: llama.cpp's LLAMA_MAX_SEQ.
const maxSequences = 256

// embedder is a loaded embeddings model. Its context runs one request at a time (mu); a request
// packs its inputs into as few decodes as the batch holds, each input a sequence of its own
// from position 0, and reads one pooled vector per sequence.
type embedder struct {
	native *native.Model
	mu     sync.Mutex // owns lctx; held by Embed and Close
	lctx   *native.Context
	closed bool
	info   engine.ModelInfo
	// batchSize is the most tokens per decode; limit the most tokens of one input.
	batchSize, limit int

	active, queued         atomic.Int32
	requests, promptTokens atomic.Int64
}

// LoadEmbedder implements engine.EmbedderEngine: a GGUF of an embedding architecture (bert,
// nomic-bert, jina-bert, gemma-embedding...) or a decoder whose final token vectors are pooled.
func (*Engine) LoadEmbedder(ctx context.Context, opts engine.LoadOptions) (engine.Embedder, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pooling, err := parsePooling(opts.Pooling)
	if err != nil {
		return nil, err
	}
	m, err := native.LoadModel(opts.Path, native.ModelParams{GPULayers: opts.GPULayers, MainGPU: opts.MainGPU})
	if err != nil {
		return nil, err
	}
	e, err := newEmbedder(m, pooling, false, opts)
	if err != nil {
		m.Close()
		return nil, err
	}
	return e, nil
}

// parsePooling reads a configured pooling name; "" leaves it to the GGUF.
func parsePooling(name string) (native.Pooling, error) {
	switch name {
	case "":
		return native.PoolingUnspecified, nil
	case "mean":
		return native.PoolingMean, nil
	case "cls":
		return native.PoolingCLS, nil
	case "last":
		return native.PoolingLast, nil
	}
	return 0, fmt.Errorf("pooling %q: want mean, cls or last", name)
}

// newEmbedder creates the embeddings context of m: a reranker's when rank, whose GGUF must name
// rank pooling. An embeddings model whose GGUF names no pooling (a plain decoder) is
// mean-pooled. The embedder owns m from then on.
func newEmbedder(m *native.Model, pooling native.Pooling, rank bool, opts engine.LoadOptions) (*embedder, error) {
	limit := opts.ContextLength
	if limit <= 0 {
		limit = min(m.TrainContextLength(), engine.DefaultContextLength)
	}
	batchSize := opts.BatchSize
	if batchSize <= 0 {
		batchSize = engine.DefaultBatchSize
	}
	// An encoder takes a whole input in one micro-batch.
	batchSize = max(batchSize, limit)
	lctx, err := newEmbedContext(m, pooling, batchSize, opts)
	if err != nil {
		return nil, err
	}
	switch got := lctx.Pooling(); {
	case rank && got != native.PoolingRank:
		lctx.Close()
		return nil, fmt.Errorf("%s is not a reranker: its GGUF names %q pooling, not rank (a classification head)", opts.Path, got)
	case !rank && got == native.PoolingRank:
		lctx.Close()
		return nil, fmt.Errorf("%s is a reranker (rank pooling), not an embeddings model: declare it with modality = \"rerank\"", opts.Path)
	case !rank && (got == native.PoolingNone || got == native.PoolingUnspecified):
		lctx.Close()
		slog.Debug("model names no pooling: mean-pooling it", "path", opts.Path)
		if lctx, err = newEmbedContext(m, native.PoolingMean, batchSize, opts); err != nil {
			return nil, err
		}
	}
	arch, _ := m.Meta("general.architecture")
	return &embedder{
		native: m, lctx: lctx, batchSize: batchSize, limit: limit,
		info: engine.ModelInfo{
			Architecture:       arch,
			Description:        m.Description(),
			ParameterCount:     m.ParamCount(),
			SizeBytes:          m.SizeBytes(),
			Quantization:       m.FileType(),
			ContextLength:      limit,
			TrainContextLength: m.TrainContextLength(),
			Parallel:           1,
			EmbeddingLength:    m.EmbeddingLength(),
			Pooling:            lctx.Pooling().String(),
			Inputs:             []string{"text"},
		},
	}, nil
}

func newEmbedContext(m *native.Model, pooling native.Pooling, batchSize int, opts engine.LoadOptions) (*native.Context, error) {
	return native.NewContext(m, native.ContextParams{
		ContextLength: batchSize,
		BatchSize:     batchSize,
		Sequences:     min(batchSize, maxSequences),
		UnifiedKV:     true,
		Threads:       threads(opts),
		Embeddings:    true,
		Pooling:       pooling,
	})
}

// Info implements engine.Embedder.
func (e *embedder) Info() engine.ModelInfo { return e.info }

// Stats implements engine.Embedder.
func (e *embedder) Stats() engine.Stats {
	return engine.Stats{Active: int(e.active.Load()), Queued: int(e.queued.Load()),
		Requests: e.requests.Load(), PromptTokens: e.promptTokens.Load()}
}

// Close waits for the running request, then frees the context and the model.
func (e *embedder) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		e.lctx.Close()
		e.native.Close()
	}
	return nil
}

// Embed implements engine.Embedder.
func (e *embedder) Embed(ctx context.Context, req engine.EmbedRequest) (engine.EmbedResult, error) {
	if len(req.Inputs) == 0 {
		return engine.EmbedResult{}, fmt.Errorf("%w: no inputs to embed", engine.ErrInvalidRequest)
	}
	began := time.Now()
	e.queued.Add(1)
	e.mu.Lock()
	e.queued.Add(-1)
	defer e.mu.Unlock()
	if e.closed {
		return engine.EmbedResult{}, engine.ErrClosed
	}
	out, total, err := e.runLocked(ctx, req)
	if err != nil {
		return engine.EmbedResult{}, err
	}
	if req.Normalize {
		for _, v := range out {
			normalize(v)
		}
	}
	return engine.EmbedResult{Embeddings: out, PromptTokens: total, ProcessDuration: time.Since(began)}, nil
}

// runLocked tokenizes the request's inputs and runs them, returning one pooled vector per input
// and the tokens they took.
func (e *embedder) runLocked(ctx context.Context, req engine.EmbedRequest) ([][]float32, int, error) {
	inputs, total, err := e.tokenizeLocked(req)
	if err != nil {
		return nil, 0, err
	}
	e.active.Add(1)
	defer e.active.Add(-1)
	e.requests.Add(1)
	e.promptTokens.Add(int64(total))
	// A cancelled request aborts its decode; the flag is cleared once the callback has run,
	// so that it cannot reach the next request.
	aborted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(aborted)
		e.lctx.SetAbort(true)
	})
	defer func() {
		if !stop() {
			<-aborted
			e.lctx.SetAbort(false)
		}
	}()
	out, err := e.embedLocked(ctx, inputs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		return nil, 0, err
	}
	return out, total, nil
}

// tokenizeLocked turns each input into tokens, checking ids and lengths.
func (e *embedder) tokenizeLocked(req engine.EmbedRequest) ([][]int32, int, error) {
	inputs := make([][]int32, len(req.Inputs))
	total := 0
	vocab := int32(e.native.VocabSize())
	for i, in := range req.Inputs {
		toks := in.Tokens
		if toks == nil {
			var err error
			if toks, err = e.native.Tokenize(in.Text, true, true); err != nil {
				return nil, 0, fmt.Errorf("%w: input %d: %v", engine.ErrInvalidRequest, i, err)
			}
		}
		if len(toks) == 0 {
			return nil, 0, fmt.Errorf("%w: input %d is empty", engine.ErrInvalidRequest, i)
		}
		for _, t := range toks {
			if t < 0 || t >= vocab {
				return nil, 0, fmt.Errorf("%w: input %d has token id %d, outside the model's vocabulary of %d", engine.ErrInvalidRequest, i, t, vocab)
			}
		}
		if len(toks) > e.limit {
			if !req.Truncate {
				return nil, 0, &engine.InputTooLongError{Index: i, Tokens: len(toks), Limit: e.limit}
			}
			toks = toks[:e.limit]
		}
		inputs[i] = toks
		total += len(toks)
	}
	return inputs, total, nil
}

// embedLocked runs the inputs through the model, as many per decode as the batch holds.
func (e *embedder) embedLocked(ctx context.Context, inputs [][]int32) ([][]float32, error) {
	out := make([][]float32, len(inputs))
	batch := native.NewBatch(e.batchSize)
	defer batch.Free()
	for first := 0; first < len(inputs); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch.Clear()
		last := first
		for last < len(inputs) && last-first < maxSequences && batch.Len()+len(inputs[last]) <= e.batchSize {
			for pos, t := range inputs[last] {
				// Every token is an output: decoder embedders pool over them.
				batch.Add(t, pos, last-first, true)
			}
			last++
		}
		if err := e.decodeLocked(batch); err != nil {
			return nil, err
		}
		for i := first; i < last; i++ {
			v := e.lctx.SequenceEmbeddings(nil, i-first)
			if len(v) == 0 {
				return nil, fmt.Errorf("llama.cpp returned no embedding for input %d", i)
			}
			out[i] = v
		}
		first = last
	}
	return out, nil
}

// decodeLocked runs one batch on an empty cache: an encoder has none, a decoder's is cleared so
// that each batch's sequences start from position 0.
func (e *embedder) decodeLocked(batch *native.Batch) error {
	e.lctx.ClearMemory()
	err := e.lctx.Decode(batch)
	if errors.Is(err, native.ErrAborted) {
		return context.Canceled
	}
	return err
}

// normalize scales v to unit L2 norm (a zero vector stays zero).
func normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	scale := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= scale
	}
}
