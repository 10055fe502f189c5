package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// The decode loop. One goroutine per loaded model owns the llama.cpp context, the batch and the
// slots (KV-cache sequences). Each step it puts into one batch the next token of every sequence
// that is generating, then prompt chunks of the sequences still reading their prompt, taking
// turns, and runs one llama_decode; then each sequence samples from its own sampler at its own
// batch index. While sequences generate, the prompt part of a step is capped so that the step
// takes at most promptSlowdown times a generation-only step (see stepCost): a long prompt
// arriving slows the others' tokens by that factor at most instead of stalling them.
//
// Requests reach the loop through a queue; the loop sends each request's text back through the
// request (never blocking on a slow client) and marks it done when it ends.

// promptSlowdown bounds how much longer than a generation-only step a step carrying prompt
// tokens may take while sequences generate: their time between tokens grows by about this
// factor while a prompt is read (the goal: at most 2x, with room for noise).
const promptSlowdown = 1.6

// minPromptChunk is the fewest prompt tokens a step carries, so a prompt always progresses.
const minPromptChunk = 4

// firstPromptChunk is the prompt chunk while the loop has not yet measured a step that carries
// prompt tokens next to generating ones.
const firstPromptChunk = 16

// request is one Generate call as the loop sees it.
type request struct {
	ctx       context.Context
	prompt    []int32
	sampler   *native.Sampler
	filter    outputFilter
	maxTokens int
	queuedAt  time.Time
	// logprobs asks the loop for each token's log-probability and topLogprobs alternatives.
	logprobs    bool
	topLogprobs int
	// media is the prompt of a request with images or audio, instead of prompt: the loop
	// evaluates it in a step of its own (media.go). Generate owns and frees it.
	media *native.MediaPrompt

	// stopped is set by Generate's side when the request must end early: its context ended or
	// emit failed. The loop ends it at its next step.
	stopped atomic.Bool
	// unread is set when the loop sends text and cleared by Generate once emit has taken it.
	unread atomic.Bool

	// ready has a value when text or the end is waiting for Generate.
	ready chan struct{}
	mu    sync.Mutex
	text  strings.Builder
	// generated counts the tokens generated when text was last added to.
	generated int
	lps       []engine.TokenLogprob
	done      bool
	err       error
	res       engine.GenerateResult
}

// send hands text to Generate, with the count of tokens generated so far.
func (r *request) send(text string, generated int) {
	if text == "" {
		return
	}
	r.mu.Lock()
	r.text.WriteString(text)
	r.generated = generated
	r.mu.Unlock()
	r.unread.Store(true)
	r.signal()
}

// sendLogprob hands a token's log-probabilities to Generate, ahead of the text holding it.
func (r *request) sendLogprob(lp engine.TokenLogprob) {
	r.mu.Lock()
	r.lps = append(r.lps, lp)
	r.mu.Unlock()
	r.unread.Store(true)
	r.signal()
}

// end hands the result to Generate; the loop no longer touches the request after it.
func (r *request) end(res engine.GenerateResult, err error) {
	r.mu.Lock()
	r.res, r.err, r.done = res, err, true
	r.mu.Unlock()
	r.signal()
}

func (r *request) signal() {
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

// take returns the text and log-probabilities waiting and whether the request has ended.
func (r *request) take() (text string, lps []engine.TokenLogprob, generated int, done bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	text, lps = r.text.String(), r.lps
	r.text.Reset()
	r.lps = nil
	return text, lps, r.generated, r.done
}

// slot is one KV-cache sequence: the tokens it holds (kept after a request, for prefix reuse)
// and the request using it.
type slot struct {
	seq    int
	tokens []int32 // in the KV cache at positions 0..len-1
	// extraCells is how many more KV cells than tokens the sequence fills: under M-RoPE
	// (Qwen2-VL) an image of w×h embeddings takes w·h cells but only max(w, h) positions.
	extraCells int
	used       uint64 // the loop's step when it last served a request, to reuse the oldest cache

	req     *request
	res     engine.GenerateResult
	pending []int32 // prompt tokens still to decode; empty once generating
	media   bool    // the request's media prompt is still to evaluate
	next    int32   // the sampled token to decode next, when generating
	started time.Time
	genFrom time.Time

	// In the step being built: the tokens this slot put into the batch and the batch index of
	// its logits (-1: none).
	inBatch []int32
	out     int
}

func (s *slot) generating() bool { return s.req != nil && len(s.pending) == 0 && !s.media }

// cells is how many KV-cache cells s's sequence fills.
func (s *slot) cells() int { return len(s.tokens) + s.extraCells }

// emptyCache removes s's sequence from the KV cache.
func (l *loop) emptyCache(s *slot) {
	l.lctx.RemoveTokens(s.seq, 0, -1)
	s.tokens, s.extraCells = s.tokens[:0], 0
}

// loop is the decode loop of one model.
type loop struct {
	lctx      *native.Context
	model     *native.Model
	proj      *native.Projector // nil for a text-only model
	batch     *native.Batch
	batchSize int
	seqLen    int
	slots     []*slot
	steps     uint64
	turn      int // round-robin start among the slots reading a prompt
	cost      stepCost
	// promptCap shrinks after the KV cache was full, so steps carry fewer prompt tokens.
	promptCap int

	wake chan struct{} // a request arrived or stopped
	// read is signalled by Generate when emit has taken a request's text.
	read chan struct{}
	// sentTo are the requests the current step sent text to.
	sentTo []*request
	done   chan struct{} // closed when the loop has ended

	qmu     sync.Mutex
	queue   []*request
	closing bool

	// flightMu orders a stopping request's abort against the step starting: inFlight is the
	// set of requests in the decode running now.
	flightMu sync.Mutex
	inFlight []*request

	queued, active                              atomic.Int32
	requests, promptTokens, genTokens, genNanos atomic.Int64
}

func newLoop(lctx *native.Context, m *native.Model, proj *native.Projector, batchSize, seqLen, parallel int) *loop {
	l := &loop{
		lctx: lctx, model: m, proj: proj, batch: native.NewBatch(batchSize), batchSize: batchSize,
		seqLen: seqLen, promptCap: batchSize,
		wake: make(chan struct{}, 1), read: make(chan struct{}, 1), done: make(chan struct{}),
	}
	for i := range parallel {
		l.slots = append(l.slots, &slot{seq: i, out: -1})
	}
	go l.run()
	return l
}

// submit queues r; it fails when the model is closing.
func (l *loop) submit(r *request) error {
	l.qmu.Lock()
	if l.closing {
		l.qmu.Unlock()
		return engine.ErrClosed
	}
	l.queue = append(l.queue, r)
	l.queued.Add(1)
	l.qmu.Unlock()
	l.poke()
	return nil
}

func (l *loop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// stop ends r early: at once when it is still queued, else at the loop's next step, aborting
// the running decode when it serves only stopped requests.
func (l *loop) stop(r *request) {
	r.stopped.Store(true)
	l.qmu.Lock()
	i := slices.Index(l.queue, r)
	if i >= 0 {
		l.queue = slices.Delete(l.queue, i, i+1)
		l.queued.Add(-1)
	}
	l.qmu.Unlock()
	if i >= 0 {
		r.end(engine.GenerateResult{QueueDuration: time.Since(r.queuedAt)}, stoppedErr(r))
		return
	}
	l.flightMu.Lock()
	if len(l.inFlight) > 0 && allStopped(l.inFlight) {
		l.lctx.SetAbort(true)
	}
	l.flightMu.Unlock()
	l.poke()
}

// close fails the queued requests, lets the running ones finish and waits for the loop to end.
func (l *loop) close() {
	l.qmu.Lock()
	l.closing = true
	queue := l.queue
	l.queue = nil
	l.queued.Store(0)
	l.qmu.Unlock()
	for _, r := range queue {
		r.end(engine.GenerateResult{}, engine.ErrClosed)
	}
	l.poke()
	<-l.done
	l.batch.Free()
}

func stoppedErr(r *request) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	return errEmitFailed
}

// errEmitFailed ends a request whose emit returned an error; Generate returns that error.
var errEmitFailed = errors.New("emit failed")

func allStopped(rs []*request) bool {
	for _, r := range rs {
		if !r.stopped.Load() {
			return false
		}
	}
	return true
}

func (l *loop) run() {
	defer close(l.done)
	for {
		l.admit()
		if l.active.Load() == 0 {
			l.qmu.Lock()
			closing := l.closing
			l.qmu.Unlock()
			if closing {
				return
			}
			<-l.wake
			continue
		}
		l.step()
	}
}

// admit gives free slots to queued requests, oldest first.
func (l *loop) admit() {
	for {
		free := l.freeSlots()
		if len(free) == 0 {
			return
		}
		l.qmu.Lock()
		if len(l.queue) == 0 {
			l.qmu.Unlock()
			return
		}
		r := l.queue[0]
		l.queue = l.queue[1:]
		l.queued.Add(-1)
		l.qmu.Unlock()
		l.start(pickSlot(free, r.prompt), r)
	}
}

func (l *loop) freeSlots() []*slot {
	var free []*slot
	for _, s := range l.slots {
		if s.req == nil {
			free = append(free, s)
		}
	}
	return free
}

// pickSlot chooses the free slot whose cache shares the longest prefix with prompt, else the
// one used least recently, so the caches of recent conversations survive longest.
func pickSlot(free []*slot, prompt []int32) *slot {
	best, bestLen := free[0], -1
	for _, s := range free {
		n := commonPrefix(s.tokens, prompt)
		if n > bestLen || n == bestLen && s.used < best.used {
			best, bestLen = s, n
		}
	}
	return best
}

// start puts r in s, keeping the cached prefix the prompt shares with s's tokens.
func (l *loop) start(s *slot, r *request) {
	if r.media != nil {
		l.startMedia(s, r)
		return
	}
	cached := commonPrefix(s.tokens, r.prompt)
	if cached == len(r.prompt) {
		cached-- // the last prompt token must be decoded again to get its logits
	}
	if !l.lctx.RemoveTokens(s.seq, cached, -1) {
		l.lctx.RemoveTokens(s.seq, 0, -1)
		cached = 0
	}
	// A media prompt's positions match no token (mediaPosition), so a reused prefix holds none.
	s.tokens, s.extraCells = s.tokens[:cached], 0
	s.req = r
	s.pending = r.prompt[cached:]
	s.started = time.Now()
	s.res = engine.GenerateResult{
		PromptTokens: len(r.prompt), CachedPromptTokens: cached, QueueDuration: s.started.Sub(r.queuedAt),
	}
	l.active.Add(1)
	l.requests.Add(1)
}

// finish ends the request in s with err (nil: finished normally with s.res.FinishReason).
func (l *loop) finish(s *slot, err error) {
	r := s.req
	if !s.genFrom.IsZero() {
		s.res.GenerateDuration = time.Since(s.genFrom)
	}
	if err == nil {
		r.send(r.filter.flush(), s.res.CompletionTokens)
	}
	read := s.res.PromptTokens - s.res.CachedPromptTokens - len(s.pending)
	if s.media {
		read = 0 // its media prompt was never evaluated
	}
	l.promptTokens.Add(int64(read))
	l.genTokens.Add(int64(s.res.CompletionTokens))
	l.genNanos.Add(int64(s.res.GenerateDuration))
	l.active.Add(-1)
	s.req, s.pending, s.media, s.genFrom, s.used = nil, nil, false, time.Time{}, l.steps
	r.end(s.res, err)
}

// step builds one batch, decodes it and samples.
func (l *loop) step() {
	l.steps++
	for _, s := range l.slots {
		if s.req != nil && s.req.stopped.Load() {
			l.finish(s, stoppedErr(s.req))
		}
	}
	if s := l.mediaSlot(); s != nil {
		l.evalMedia(s)
		return
	}
	gen := l.fill()
	if l.batch.Len() == 0 {
		return
	}

	l.flightMu.Lock()
	l.inFlight = l.inFlight[:0]
	for _, s := range l.slots {
		if len(s.inBatch) > 0 {
			l.inFlight = append(l.inFlight, s.req)
		}
	}
	skip := allStopped(l.inFlight)
	l.lctx.SetAbort(false)
	l.flightMu.Unlock()
	if skip {
		l.unfill()
		return
	}

	began := time.Now()
	err := l.lctx.Decode(l.batch)
	took := time.Since(began)

	l.flightMu.Lock()
	l.inFlight = l.inFlight[:0]
	l.flightMu.Unlock()

	switch {
	case err == nil:
	case errors.Is(err, native.ErrAborted):
		// Every request in the batch stopped: the next step ends them.
		l.unfill()
		return
	case errors.Is(err, native.ErrNoKVSlot):
		l.unfill()
		l.relieveCache()
		return
	default:
		// The context is in an unknown state for these sequences: end their requests.
		l.unfill()
		for _, s := range l.slots {
			if s.req != nil {
				l.emptyCache(s)
				l.finish(s, fmt.Errorf("llama.cpp failed to decode: %w", err))
			}
		}
		return
	}

	l.cost.observe(gen, l.batch.Len(), took)
	l.sentTo = l.sentTo[:0]
	if l.promptCap < l.batchSize {
		l.promptCap = min(l.promptCap*2, l.batchSize) // the cache had room again
	}
	for _, s := range l.slots {
		if len(s.inBatch) == 0 {
			continue
		}
		s.tokens = append(s.tokens, s.inBatch...)
		if !s.generating() {
			s.pending = s.pending[len(s.inBatch):]
		}
		s.inBatch = s.inBatch[:0]
		if s.out < 0 {
			continue
		}
		l.sentTo = append(l.sentTo, s.req)
		token := s.req.sampler.Sample(l.lctx, s.out)
		if s.req.logprobs && !l.model.IsEOG(token) {
			s.req.sendLogprob(tokenLogprob(l.model, l.lctx.Logits(s.out), token, s.req.topLogprobs))
		}
		s.out = -1
		if s.genFrom.IsZero() {
			s.genFrom = time.Now()
			s.res.PromptDuration = s.genFrom.Sub(s.started)
		}
		l.accept(s, token)
	}
	l.awaitReaders()
}

// readWait bounds how long a step waits for the requests' goroutines to take their text.
const readWait = 2 * time.Millisecond

// awaitReaders waits, up to readWait, until every request sent text this step has passed it to
// its emit. On a small machine ggml's threads occupy every core during a decode, and a
// goroutine streaming a token to its client would preempt one of them, stalling the whole
// decode at its next barrier: streaming between decodes is cheaper than streaming during one.
// A slow client costs the others readWait per step at most.
func (l *loop) awaitReaders() {
	var timer *time.Timer
	for {
		waiting := false
		for _, r := range l.sentTo {
			if r.unread.Load() && !r.stopped.Load() {
				waiting = true
				break
			}
		}
		if !waiting {
			return
		}
		if timer == nil {
			timer = time.NewTimer(readWait)
			defer timer.Stop()
		}
		select {
		case <-l.read:
		case <-timer.C:
			return
		}
	}
}

// fill builds the batch: the next token of every generating sequence, then prompt chunks in
// turns, within the prompt budget. It returns the number of generating sequences.
func (l *loop) fill() int {
	b := l.batch
	b.Clear()
	gen := 0
	for _, s := range l.slots {
		if s.generating() {
			s.out = b.Len()
			s.inBatch = append(s.inBatch[:0], s.next)
			b.Add(s.next, len(s.tokens), s.seq, true)
			gen++
		}
	}
	budget := min(l.batchSize-gen, l.promptCap)
	if gen > 0 {
		budget = min(budget, l.cost.promptBudget(gen))
	}
	var reading []*slot
	for _, s := range l.slots {
		if s.req != nil && len(s.pending) > 0 {
			reading = append(reading, s)
		}
	}
	if len(reading) == 0 {
		return gen
	}
	l.turn = (l.turn + 1) % len(reading)
	for i := range reading {
		if budget <= 0 {
			break
		}
		s := reading[(l.turn+i)%len(reading)]
		n := min(len(s.pending), budget)
		budget -= n
		chunk := s.pending[:n]
		s.inBatch = append(s.inBatch[:0], chunk...)
		last := n == len(s.pending)
		for j, t := range chunk {
			b.Add(t, len(s.tokens)+j, s.seq, last && j == n-1)
		}
		if last {
			s.out = b.Len() - 1
		}
	}
	return gen
}

// unfill forgets the batch and whatever a failed decode left of it in the cache.
func (l *loop) unfill() {
	for _, s := range l.slots {
		if len(s.inBatch) > 0 {
			l.lctx.RemoveTokens(s.seq, len(s.tokens), -1)
			s.inBatch = s.inBatch[:0]
		}
		s.out = -1
	}
}

// relieveCache makes room after the KV cache had none for a batch: first it drops the caches
// kept for prefix reuse by idle slots, then it halves the prompt tokens of a step, and when
// steps carry no prompt it ends the longest request.
func (l *loop) relieveCache() {
	freed := false
	for _, s := range l.slots {
		if s.req == nil && s.cells() > 0 {
			l.emptyCache(s)
			freed = true
		}
	}
	if freed {
		return
	}
	reading := false
	for _, s := range l.slots {
		reading = reading || s.req != nil && len(s.pending) > 0
	}
	if reading && l.promptCap > 1 {
		l.promptCap /= 2
		return
	}
	var longest *slot
	for _, s := range l.slots {
		if s.req != nil && (longest == nil || s.cells() > longest.cells()) {
			longest = s
		}
	}
	if longest != nil {
		l.finish(longest, fmt.Errorf("%w: the KV cache is full with %d requests sharing it; this one, the longest (%d tokens), was ended so the others can go on: retry, or lower parallel or raise context_length", engine.ErrCacheFull, int(l.active.Load()), longest.cells()))
	}
}

// accept handles a sampled token: end of generation, text out, stop strings, limits.
func (l *loop) accept(s *slot, token int32) {
	r := s.req
	if l.model.IsEOG(token) {
		s.res.FinishReason = engine.FinishStop
		l.finish(s, nil)
		return
	}
	s.res.CompletionTokens++
	text, stopped := r.filter.push(l.model.AppendPiece(nil, token, false))
	r.send(text, s.res.CompletionTokens)
	switch {
	case stopped:
		s.res.FinishReason = engine.FinishStop
		l.finish(s, nil)
	case r.maxTokens > 0 && s.res.CompletionTokens >= r.maxTokens || s.cells()+1 >= l.seqLen:
		s.res.FinishReason = engine.FinishLength
		l.finish(s, nil)
	default:
		s.next = token
	}
}

// stepCost measures what prompt tokens cost next to generating ones, to size the prompt part of
// a step. It keeps the time of generation-only steps by the number of generating sequences,
// and the extra time each prompt token adds to such a step, both as running averages measured
// as the loop runs. The extra time is measured in mixed steps themselves because it is not the
// per-token cost of a big prompt batch: a few tokens added to a generation step run in the
// kernels for small batches, which cost more per token than the large-batch ones (measured on
// 2 cores: a line through small and large steps gave chunks that slowed the streams 2.5x).
type stepCost struct {
	genT     []float64 // seconds of a generation-only step, by generating sequences; 0: unseen
	perToken float64   // extra seconds per prompt token in a mixed step; 0: unseen
}

// costWeight is how much one step moves the averages: about the last 10 steps count.
const costWeight = 0.1

func (c *stepCost) observe(gen, n int, d time.Duration) {
	t := d.Seconds()
	if gen == 0 {
		return // a prompt alone: no stream waits on it
	}
	for len(c.genT) <= gen {
		c.genT = append(c.genT, 0)
	}
	if n == gen {
		c.genT[gen] = average(c.genT[gen], t)
		return
	}
	base := c.genStep(gen)
	if base == 0 {
		return
	}
	// Noise can make a mixed step look cheaper than a generation step; a prompt token still
	// costs something.
	extra := max(t-base, base/100) / float64(n-gen)
	c.perToken = average(c.perToken, extra)
}

// average moves the running average mean toward v; a zero mean is unset and takes v.
func average(mean, v float64) float64 {
	if mean == 0 {
		return v
	}
	return mean + costWeight*(v-mean)
}

// genStep is the time of a generation-only step of gen sequences: measured, else that of the
// nearest count measured, 0 when none was.
func (c *stepCost) genStep(gen int) float64 {
	for d := 0; gen-d > 0 || gen+d < len(c.genT); d++ {
		for _, g := range []int{gen - d, gen + d} {
			if g > 0 && g < len(c.genT) && c.genT[g] > 0 {
				return c.genT[g]
			}
		}
	}
	return 0
}

// promptBudget is how many prompt tokens may join gen generating tokens in one step.
func (c *stepCost) promptBudget(gen int) int {
	base := c.genStep(gen)
	if base == 0 || c.perToken == 0 {
		return firstPromptChunk
	}
	return max(int((promptSlowdown-1)*base/c.perToken), minPromptChunk)
}

func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
