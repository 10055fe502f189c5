package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
#include "ggml-cpu.h"
#include "ggml-backend.h"

// The thread pool must come from the CPU backend that computes: the variant library loaded at
// run time, not the generic copy compiled into the binary, whose workers would run the generic
// kernels. llama.cpp's own tools look the functions up the same way.
typedef struct ggml_threadpool *(*syn_threadpool_new_fn)(struct ggml_threadpool_params *);
typedef void (*syn_threadpool_free_fn)(struct ggml_threadpool *);

static ggml_backend_reg_t syn_cpu_reg(void) {
	ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
	return dev ? ggml_backend_dev_backend_reg(dev) : NULL;
}

static struct ggml_threadpool *syn_threadpool(ggml_backend_reg_t reg, int n_threads, int poll) {
	if (reg == NULL) return NULL;
	syn_threadpool_new_fn fn = (syn_threadpool_new_fn) ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
	if (fn == NULL) return NULL;
	struct ggml_threadpool_params p = ggml_threadpool_params_default(n_threads);
	p.poll = poll;
	return fn(&p);
}

static void syn_threadpool_free(ggml_backend_reg_t reg, struct ggml_threadpool *pool) {
	syn_threadpool_free_fn fn = (syn_threadpool_free_fn) ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free");
	if (fn != NULL) fn(pool);
}

// syn_abort is polled by ggml between graph nodes; setting it makes llama_decode return 2.
static bool syn_abort(void *data) { return __atomic_load_n((int *)data, __ATOMIC_RELAXED) != 0; }
static void syn_set_abort(struct llama_context_params *p, int *flag) {
	p->abort_callback = syn_abort;
	p->abort_callback_data = flag;
}
static int *syn_new_flag(void) { int *f = malloc(sizeof(int)); *f = 0; return f; }
static void syn_store_flag(int *f, int v) { __atomic_store_n(f, v, __ATOMIC_RELAXED); }
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// FlashAttention selects flash attention.
type FlashAttention int

// FlashAttention values.
const (
	FlashAttentionAuto FlashAttention = iota
	FlashAttentionOn
	FlashAttentionOff
)

// ContextParams says how to create a context.
type ContextParams struct {
	// ContextLength is the KV cache size in tokens over all sequences; 0 = the model's.
	ContextLength int
	// BatchSize is the largest number of tokens one Decode takes.
	BatchSize int
	// Sequences is the number of independent sequences (slots) the context holds.
	Sequences int
	// UnifiedKV puts every sequence in one KV buffer of ContextLength cells that they share
	// (llama.cpp's kv_unified): a batch mixing tokens of any sequences then runs as one graph.
	// Without it each sequence has ContextLength/Sequences cells of its own, and llama.cpp
	// splits a batch into one graph per run of consecutive sequence ids with equal token
	// counts, which defeats batching across sequences.
	UnifiedKV bool
	// Threads for generation and prompt processing; 0 lets llama.cpp choose.
	Threads        int
	FlashAttention FlashAttention
	// Embeddings makes Decode extract embeddings; generation does not need them.
	Embeddings bool
	// Pooling is how an embeddings context pools token vectors into one per sequence:
	// PoolingUnspecified (the zero value) for what the model's GGUF says.
	Pooling Pooling
	// Poll is how long ggml's worker threads spin waiting for work before they sleep, 0 to
	// 100 (ggml's default is 50). Spinning threads compete with the Go side on small machines.
	Poll int
}

// Context is a llama.cpp inference context: KV cache and compute buffers. Close frees it.
type Context struct {
	c *C.struct_llama_context
	// abortMu keeps SetAbort, which may come from any goroutine at any time (a cancelled
	// request's callback can run after the request ended), off a freed flag.
	abortMu  sync.Mutex
	abort    *C.int
	aborting bool // the abort flag is set
	pool     *C.struct_ggml_threadpool
	poolReg  C.ggml_backend_reg_t // the CPU backend that made pool, and must free it
	model    *Model
}

// Errors from Decode.
var (
	// ErrNoKVSlot means the KV cache has no room for the batch.
	ErrNoKVSlot = errors.New("llama.cpp: no room in the KV cache for the batch")
	// ErrAborted means Abort stopped the decode.
	ErrAborted = errors.New("llama.cpp: decode aborted")
)

// NewContext creates a context for m.
func NewContext(m *Model, p ContextParams) (*Context, error) {
	params := C.llama_context_default_params()
	params.n_ctx = C.uint32_t(p.ContextLength)
	params.n_batch = C.uint32_t(max(p.BatchSize, 1))
	params.n_ubatch = params.n_batch
	params.n_seq_max = C.uint32_t(max(p.Sequences, 1))
	params.kv_unified = C.bool(p.UnifiedKV)
	if p.Threads > 0 {
		params.n_threads = C.int32_t(p.Threads)
		params.n_threads_batch = C.int32_t(p.Threads)
	}
	switch p.FlashAttention {
	case FlashAttentionOn:
		params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_ENABLED
	case FlashAttentionOff:
		params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	default:
		params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_AUTO
	}
	params.embeddings = C.bool(p.Embeddings)
	params.pooling_type = C.enum_llama_pooling_type(p.Pooling.c())
	params.no_perf = C.bool(true)
	flag := C.syn_new_flag()
	C.syn_set_abort(&params, flag)
	c := C.llama_init_from_model(m.c, params)
	if c == nil {
		C.free(unsafe.Pointer(flag))
		return nil, fmt.Errorf("llama.cpp could not create a context of %d tokens (out of memory?)", p.ContextLength)
	}
	// A persistent thread pool: without one, ggml creates and joins its worker threads on
	// every decode, which is every generated token.
	reg := C.syn_cpu_reg()
	pool := C.syn_threadpool(reg, params.n_threads, C.int(p.Poll))
	if pool == nil {
		C.llama_free(c)
		C.free(unsafe.Pointer(flag))
		return nil, errors.New("ggml could not start its thread pool")
	}
	C.llama_attach_threadpool(c, pool, pool)
	return &Context{c: c, abort: flag, pool: pool, poolReg: reg, model: m}, nil
}

// Close frees the context.
func (c *Context) Close() error {
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if c.aborting {
		c.aborting = false
		aborting.Add(-1)
	}
	if c.c != nil {
		C.llama_free(c.c)
		C.syn_threadpool_free(c.poolReg, c.pool)
		C.free(unsafe.Pointer(c.abort))
		c.c, c.abort, c.pool = nil, nil, nil
	}
	return nil
}

// ContextLength is the KV cache size in tokens.
func (c *Context) ContextLength() int { return int(C.llama_n_ctx(c.c)) }

// SequenceLength is the number of tokens one sequence may hold: the whole cache with a unified
// KV cache.
func (c *Context) SequenceLength() int { return int(C.llama_n_ctx_seq(c.c)) }

// Logits copies the logits of output idx of the last Decode (its index in the batch).
func (c *Context) Logits(idx int) []float32 {
	p := C.llama_get_logits_ith(c.c, C.int32_t(idx))
	if p == nil {
		return nil
	}
	n := int(C.llama_vocab_n_tokens(c.model.vocab))
	return append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(p)), n)...)
}

// SetAbort makes a running or later Decode stop (true) or run normally (false). Safe to call
// from any goroutine, also after Close (it then does nothing).
func (c *Context) SetAbort(abort bool) {
	v := C.int(0)
	if abort {
		v = 1
	}
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if c.abort == nil {
		return
	}
	C.syn_store_flag(c.abort, v)
	if abort != c.aborting {
		c.aborting = abort
		if abort {
			aborting.Add(1)
		} else {
			aborting.Add(-1)
		}
	}
}

// aborting counts the contexts whose decode is being aborted: the errors llama.cpp logs for an
// aborted decode are then expected, and logged at debug level.
var aborting atomic.Int32

// Decode runs the model over the batch. Logits of the tokens marked for output are then
// available to Sampler.Sample.
func (c *Context) Decode(b *Batch) error {
	switch code := int(C.llama_decode(c.c, b.c)); {
	case code == 0:
		return nil
	case code == 1:
		return ErrNoKVSlot
	case code == 2:
		return ErrAborted
	default:
		return fmt.Errorf("llama_decode failed with code %d", code)
	}
}

// RemoveTokens removes positions [from, to) of sequence seq from the KV cache; to < 0 means to
// the end. It reports false when the cache cannot remove a partial range.
func (c *Context) RemoveTokens(seq, from, to int) bool {
	return bool(C.llama_memory_seq_rm(C.llama_get_memory(c.c), C.llama_seq_id(seq), C.llama_pos(from), C.llama_pos(to)))
}

// ClearMemory empties the KV cache of every sequence.
func (c *Context) ClearMemory() { C.llama_memory_clear(C.llama_get_memory(c.c), C.bool(true)) }

// Batch is a set of tokens for Decode. Free releases it.
type Batch struct {
	c        C.struct_llama_batch
	capacity int
}

// NewBatch allocates a batch of up to capacity tokens.
func NewBatch(capacity int) *Batch {
	return &Batch{c: C.llama_batch_init(C.int32_t(capacity), 0, 1), capacity: capacity}
}

// Free releases the batch.
func (b *Batch) Free() {
	if b.capacity > 0 {
		C.llama_batch_free(b.c)
		b.capacity = 0
	}
}

// Len is the number of tokens in the batch.
func (b *Batch) Len() int { return int(b.c.n_tokens) }

// Cap is the batch's capacity.
func (b *Batch) Cap() int { return b.capacity }

// Clear empties the batch.
func (b *Batch) Clear() { b.c.n_tokens = 0 }

// Add appends token at position pos of sequence seq; output asks for its logits.
func (b *Batch) Add(token int32, pos, seq int, output bool) {
	i := int(b.c.n_tokens)
	if i >= b.capacity {
		panic("llamacpp: batch overflow")
	}
	unsafe.Slice(b.c.token, b.capacity)[i] = C.llama_token(token)
	unsafe.Slice(b.c.pos, b.capacity)[i] = C.llama_pos(pos)
	unsafe.Slice(b.c.n_seq_id, b.capacity)[i] = 1
	*unsafe.Slice(b.c.seq_id, b.capacity)[i] = C.llama_seq_id(seq)
	out := C.int8_t(0)
	if output {
		out = 1
	}
	unsafe.Slice(b.c.logits, b.capacity)[i] = out
	b.c.n_tokens++
}
