// Package outetts is a neural text-to-speech engine: OuteTTS models through llama.cpp, as
// llama.cpp's tts tool runs them, written in Go. An LLM (LoadOptions.Path) writes the text's
// audio codes, a WavTokenizer decoder (LoadOptions.Vocoder) turns them into spectrum frames,
// and our inverse STFT (spectrum.go) into 24 kHz audio. It shares only the native layer with
// the LLM engine (engine/llamacpp): no decode loop, no slots; one synthesis at a time.
package outetts

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// Name is the engine's name in syn4pse.toml.
const Name = "outetts"

// Engine speaks with OuteTTS models through llama.cpp.
type Engine struct{}

// New returns the OuteTTS engine.
func New() *Engine {
	native.Init()
	return &Engine{}
}

// Name implements engine.TTSEngine.
func (*Engine) Name() string { return Name }

// Limits of one synthesis. The node speaks long text sentence by sentence.
const (
	// outettsMaxCodes is the most codes (frames of 1/75 s) one Synthesize makes: 27 s.
	outettsMaxCodes = 2048
	// outettsMaxTokens caps generated tokens, codes and the words and markers between them.
	outettsMaxTokens = 3072
	// outettsContext is the LLM's context when the options set none: a speaker profile, the
	// text and the generated tokens.
	outettsContext = 8192
	// outettsSeed seeds sampling: the same text and voice give the same audio.
	outettsSeed = 1234
	// defaultVoice is the voice of the speaker-less prompt, where the model picks one.
	defaultVoice = "default"
)

// LoadTTS implements engine.TTSEngine. opts.Voice may name an OuteTTS speaker profile (a JSON
// file of words with their codes) that becomes the default voice, named after the file.
func (*Engine) LoadTTS(ctx context.Context, opts engine.LoadOptions) (engine.TTS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Vocoder == "" {
		return nil, errors.New("outetts needs a vocoder: set the model's vocoder to a WavTokenizer decoder GGUF")
	}
	var sp *speaker
	voices := []string{defaultVoice}
	if opts.Voice != "" && opts.Voice != defaultVoice {
		var err error
		if sp, err = loadSpeaker(opts.Voice); err != nil {
			return nil, err
		}
		voices = []string{strings.TrimSuffix(filepath.Base(opts.Voice), filepath.Ext(opts.Voice)), defaultVoice}
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	mp := native.ModelParams{GPULayers: opts.GPULayers, MainGPU: opts.MainGPU}
	m, err := native.LoadModel(opts.Path, mp)
	if err != nil {
		return nil, err
	}
	t, err := newOuteTTSModel(m, opts, threads)
	if err != nil {
		m.Close()
		return nil, err
	}
	if t.voc, err = newVocoder(opts.Vocoder, outettsMaxCodes, threads, mp); err != nil {
		t.lctx.Close()
		m.Close()
		return nil, err
	}
	t.speaker = sp
	t.info.Voices = voices
	t.info.Description += " + " + t.voc.model.Description()
	t.info.ParameterCount += t.voc.model.ParamCount()
	t.info.SizeBytes += t.voc.model.SizeBytes()
	return t, nil
}

// outettsModel is a loaded OuteTTS pair. One synthesis runs at a time: each owns both contexts
// until it ends.
type outettsModel struct {
	mu      sync.Mutex // held by a synthesis and by Close
	closed  bool
	llm     *native.Model
	lctx    *native.Context
	batch   *native.Batch
	voc     *vocoder
	vocab   outettsVocab
	speaker *speaker // nil: the speaker-less prompt
	info    engine.ModelInfo

	requests, promptTokens, genTokens, genNanos atomic.Int64
	waiting, active                             atomic.Int32
}

// outettsVocab is what the engine knows of the LLM's vocabulary, found by token text, so any
// OuteTTS GGUF works whatever its token ids.
type outettsVocab struct {
	version  outettsVersion
	audioEnd int32
	codes    map[int32]int32 // token → code value, for the <|N|> tokens
}

var codeToken = regexp.MustCompile(`^<\|(\d+)\|>$`)

// readOuteTTSVocab finds the code tokens and markers in m's vocabulary.
func readOuteTTSVocab(m *native.Model) (outettsVocab, error) {
	v := outettsVocab{audioEnd: -1, codes: map[int32]int32{}}
	markers := map[string]bool{}
	// Codes are matched by text whatever their token type (converters store added tokens as
	// user-defined or control); no ordinary piece looks like <|123|>.
	for t := range int32(m.VocabSize()) {
		text := m.VocabText(t)
		if !strings.HasPrefix(text, "<|") {
			continue
		}
		if sub := codeToken.FindStringSubmatch(text); sub != nil {
			if n, err := strconv.Atoi(sub[1]); err == nil {
				v.codes[t] = int32(n)
			}
			continue
		}
		if control, user := m.TokenAttr(t); control || user {
			markers[text] = true
		}
		if text == "<|audio_end|>" && markers[text] {
			v.audioEnd = t
		}
	}
	for _, need := range []string{"<|im_start|>", "<|text_start|>", "<|text_end|>", "<|audio_start|>", "<|audio_end|>"} {
		if !markers[need] {
			return v, fmt.Errorf("not an OuteTTS model: its vocabulary has no %s token", need)
		}
	}
	if len(v.codes) == 0 {
		return v, errors.New("not an OuteTTS model: its vocabulary has no audio code tokens <|0|>, <|1|>…")
	}
	if m.ChatTemplate() == "outetts-0.3" || !markers["<|text_sep|>"] && markers["<|space|>"] {
		v.version = outetts03
	}
	return v, nil
}

func newOuteTTSModel(m *native.Model, opts engine.LoadOptions, threads int) (*outettsModel, error) {
	vocab, err := readOuteTTSVocab(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Path, err)
	}
	ctxLen := opts.ContextLength
	if ctxLen <= 0 {
		ctxLen = min(m.TrainContextLength(), outettsContext)
	}
	batchSize := opts.BatchSize
	if batchSize <= 0 {
		batchSize = engine.DefaultBatchSize
	}
	lctx, err := native.NewContext(m, native.ContextParams{
		ContextLength: ctxLen, BatchSize: batchSize, Sequences: 1, Threads: threads,
	})
	if err != nil {
		return nil, err
	}
	arch, _ := m.Meta("general.architecture")
	return &outettsModel{
		llm: m, lctx: lctx, batch: native.NewBatch(batchSize), vocab: vocab,
		info: engine.ModelInfo{
			Architecture:       "outetts",
			Description:        m.Description() + " (" + arch + ")",
			ParameterCount:     m.ParamCount(),
			SizeBytes:          m.SizeBytes(),
			Quantization:       m.FileType(),
			ContextLength:      ctxLen,
			TrainContextLength: m.TrainContextLength(),
			Parallel:           1,
			SampleRate:         vocoderRate,
			Languages:          []string{"en"},
		},
	}, nil
}

// Info implements engine.Model.
func (t *outettsModel) Info() engine.ModelInfo {
	return t.info.Clone()
}

// Stats implements engine.Model: prompt and generated tokens are the LLM's.
func (t *outettsModel) Stats() engine.Stats {
	return engine.Stats{
		Active: int(t.active.Load()), Queued: int(t.waiting.Load()), Requests: t.requests.Load(),
		PromptTokens: t.promptTokens.Load(), GeneratedTokens: t.genTokens.Load(),
		GenerateTime: time.Duration(t.genNanos.Load()),
	}
}

// Close waits for a running synthesis, then frees both models.
func (t *outettsModel) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.lctx.Close()
	t.batch.Free()
	t.llm.Close()
	t.voc.close()
	return nil
}

// Synthesize implements engine.TTS. The whole text is vocoded at once (WavTokenizer looks at
// all its codes), so the audio comes when the text's codes are complete, in chunks of a second.
func (t *outettsModel) Synthesize(ctx context.Context, req engine.SynthesizeRequest, emit func(engine.AudioChunk) error) (engine.SynthesizeResult, error) {
	start := time.Now()
	res := engine.SynthesizeResult{Rate: vocoderRate}
	sp, err := t.voice(req.Voice)
	if err != nil {
		return res, err
	}
	t.waiting.Add(1)
	t.mu.Lock()
	t.waiting.Add(-1)
	defer t.mu.Unlock()
	if t.closed {
		return res, engine.ErrClosed
	}
	t.active.Store(1)
	defer t.active.Store(0)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	t.requests.Add(1)
	// A cancelled request stops the decode or encode in progress. The callback is waited for
	// when it has started, so it cannot abort the next request.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		t.lctx.SetAbort(true)
		t.voc.lctx.SetAbort(true)
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
		t.lctx.SetAbort(false)
		t.voc.lctx.SetAbort(false)
	}()

	codes, err := t.generateCodes(ctx, normalizeText(req.Text, t.vocab.version), sp)
	if err != nil {
		return res, err
	}
	wave, err := t.voc.wave(codes)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, err
	}
	for len(wave) > 0 {
		n := min(len(wave), vocoderRate)
		if err := emit(engine.AudioChunk{Rate: vocoderRate, Samples: wave[:n]}); err != nil {
			return res, err
		}
		res.AudioDuration += time.Duration(n) * time.Second / vocoderRate
		wave = wave[n:]
	}
	res.ProcessDuration = time.Since(start)
	return res, nil
}

// voice finds the speaker profile of a voice name.
func (t *outettsModel) voice(name string) (*speaker, error) {
	switch {
	case name == "" || name == t.info.Voices[0]:
		return t.speaker, nil
	case name == defaultVoice:
		return nil, nil
	}
	return nil, fmt.Errorf("%w: voice %q: this model's voices are %s", engine.ErrInvalidRequest, name, strings.Join(t.info.Voices, ", "))
}

// generateCodes runs the LLM on the prompt of words and returns the code values it says, until
// <|audio_end|>, an end-of-generation token, or a limit. The caller holds t.mu.
func (t *outettsModel) generateCodes(ctx context.Context, words string, sp *speaker) ([]int32, error) {
	if words == "" {
		return nil, nil
	}
	prompt, err := t.llm.Tokenize(outettsPrompt(t.vocab.version, words, sp), true, true)
	if err != nil {
		return nil, err
	}
	limit := t.lctx.ContextLength()
	if len(prompt) >= limit {
		return nil, &engine.ContextExceededError{PromptTokens: len(prompt), Limit: limit}
	}
	t.lctx.ClearMemory()
	if err := t.decodePrompt(prompt); err != nil {
		return nil, t.decodeError(ctx, err)
	}
	t.promptTokens.Add(int64(len(prompt)))
	sampler, err := native.NewSampler(t.llm, native.SamplerParams{TopK: 4, Temperature: 1, Seed: outettsSeed})
	if err != nil {
		return nil, err
	}
	defer sampler.Close()

	genStart := time.Now()
	defer func() { t.genNanos.Add(int64(time.Since(genStart))) }()
	var codes []int32
	maxTokens := min(outettsMaxTokens, limit-len(prompt))
	for pos, n := len(prompt), 0; n < maxTokens; pos, n = pos+1, n+1 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tok := sampler.Sample(t.lctx, -1)
		t.genTokens.Add(1)
		if tok == t.vocab.audioEnd || t.llm.IsEOG(tok) {
			break
		}
		if c, ok := t.vocab.codes[tok]; ok && int(c) < t.voc.codes {
			if codes = append(codes, c); len(codes) == t.voc.maxCodes() {
				break
			}
		}
		t.batch.Clear()
		t.batch.Add(tok, pos, 0, true)
		if err := t.lctx.Decode(t.batch); err != nil {
			return nil, t.decodeError(ctx, err)
		}
	}
	return codes, nil
}

// decodePrompt decodes the prompt in batches, asking for the last token's logits.
func (t *outettsModel) decodePrompt(prompt []int32) error {
	for i := 0; i < len(prompt); i += t.batch.Cap() {
		t.batch.Clear()
		end := min(i+t.batch.Cap(), len(prompt))
		for j := i; j < end; j++ {
			t.batch.Add(prompt[j], j, 0, j == len(prompt)-1)
		}
		if err := t.lctx.Decode(t.batch); err != nil {
			return err
		}
	}
	return nil
}

// decodeError is ctx's error when a cancellation aborted the decode.
func (t *outettsModel) decodeError(ctx context.Context, err error) error {
	if errors.Is(err, native.ErrAborted) && ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("outetts: %w", err)
}
