// Package engine defines what SYN4PSE asks of an inference engine, one interface per modality,
// and the registry that finds an engine by the name used in syn4pse.toml (engine = "llama_cpp").
//
// Engines know nothing of the network or the API: they take Go values and stream Go values.
package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Sentinel errors that callers branch on. The API layer maps them to gRPC codes in one place.
var (
	// ErrInvalidRequest means the request itself is wrong (bad schema, bad grammar, bad role).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrContextExceeded means the prompt does not fit the model's context window.
	ErrContextExceeded = errors.New("prompt exceeds the context window")
	// ErrUnsupported means the engine or model cannot do what was asked.
	ErrUnsupported = errors.New("not supported")
	// ErrClosed means the model was unloaded.
	ErrClosed = errors.New("model is closed")
	// ErrCacheFull means the model's KV cache, shared by its parallel requests, had no room:
	// the request was ended so that the others could go on.
	ErrCacheFull = errors.New("KV cache full")
)

// ContextExceededError says by how much a prompt is too long. It wraps ErrContextExceeded.
type ContextExceededError struct {
	PromptTokens int
	Limit        int
}

// Error says the prompt size, the limit and what to do.
func (e *ContextExceededError) Error() string {
	return fmt.Sprintf("the prompt is %d tokens but the model's context window holds %d (including at least one token to generate); shorten the prompt or raise context_length", e.PromptTokens, e.Limit)
}

// Unwrap makes errors.Is(err, ErrContextExceeded) true.
func (e *ContextExceededError) Unwrap() error { return ErrContextExceeded }

// Message is one chat turn.
type Message struct {
	Role    string
	Content string
	// Media are the images and audio of the turn, in order, for a model with a projector
	// (LoadOptions.Projector). Content holds MediaMarker once per item, where it goes.
	Media []Media
	// ToolCalls are the calls an assistant turn made.
	ToolCalls []ToolCall
	// ToolCallID is the call a "tool" turn answers, Name the tool that answered.
	ToolCallID string
	Name       string
}

// Tool is a function the model may call.
type Tool struct {
	Name        string
	Description string
	// Parameters is the JSON schema (JSON text) of the arguments object; "" for none.
	Parameters string
}

// ToolCall is one call a model made.
type ToolCall struct {
	ID   string
	Name string
	// Arguments is JSON text of an object.
	Arguments string
}

// ToolCallDelta is a piece of a tool call as it is generated, as OpenAI streams them: the first
// delta of call Index carries its ID and Name, the next ones fragments of its Arguments.
type ToolCallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

// ToolChoice says whether and which tools the model must call, after OpenAI's tool_choice.
type ToolChoice struct {
	// Mode is ToolAuto (the zero value), ToolNone or ToolRequired.
	Mode string
	// Function names the one tool to call; it implies ToolRequired.
	Function string
}

// Tool choice modes.
const (
	ToolAuto     = "auto"
	ToolNone     = "none"
	ToolRequired = "required"
)

// MediaMarker stands in Message.Content for the next item of Message.Media.
const MediaMarker = "<__media__>"

// Media is one image or audio file (PNG, JPEG, WAV, MP3, FLAC...) as sent, undecoded.
type Media struct {
	Data []byte
	// MIME is the type as sent ("image/png", "audio/wav"); "" to sniff it from Data.
	MIME string
}

// Sampling controls token selection; Defaults gives the values used when a request sets none.
type Sampling struct {
	Temperature      float32
	TopK             int
	TopP             float32
	MinP             float32
	RepeatPenalty    float32
	RepeatLastN      int
	PresencePenalty  float32
	FrequencyPenalty float32
	Seed             uint32
}

// DefaultSampling is what llama.cpp's server uses when a request sets nothing.
func DefaultSampling() Sampling {
	return Sampling{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1, RepeatLastN: 64}
}

// GenerateRequest is one text generation.
type GenerateRequest struct {
	// Messages are rendered with the model's chat template. When nil, Prompt is used as is.
	Messages []Message
	// ContinueFinal leaves the last message, an assistant turn, open: the model continues its
	// text (an assistant prefill) instead of starting a new turn.
	ContinueFinal bool
	Prompt        string
	Sampling      Sampling
	// MaxTokens caps generated tokens; 0 generates until the model stops or the context is full.
	MaxTokens int
	// Stop strings end generation; they are not part of the output.
	Stop []string
	// Grammar (GBNF) constrains the output; "" for none.
	Grammar string
	// JSONSchema constrains the output to JSON matching this schema (JSON text); it is
	// converted to a grammar by the engine. Ignored when Grammar is set.
	JSONSchema string
	// IgnoreEOS keeps generating past the model's end-of-generation tokens (benchmarks).
	IgnoreEOS bool
	// Tools are the functions the model may call; they reach the chat template, and the
	// output is read for calls in the model's format. Only with Messages.
	Tools      []Tool
	ToolChoice ToolChoice
	// OnToolCall, when set, receives tool-call deltas as they are generated; emit then gets
	// only content. Calls are in GenerateResult.ToolCalls either way.
	OnToolCall func(ToolCallDelta) error
	// Logprobs asks for the log-probability of each generated token, and TopLogprobs
	// (0..MaxTopLogprobs) for that many of the most likely alternatives at each position. They
	// come from the model's raw distribution (a log-softmax of its logits), before the sampler
	// applies temperature, penalties, top-k/p or a grammar, as llama.cpp's server reports them
	// with post_sampling_probs off.
	Logprobs    bool
	TopLogprobs int
	// OnToken, when set with Logprobs, receives each generated token with its log-probabilities,
	// in order, before emit gets text holding it (emit's text lags behind while a UTF-8
	// character or a possible stop string is incomplete). End-of-generation tokens are not
	// reported.
	OnToken func(TokenLogprob) error
	// OnCount, when set, is told before each emit how many tokens have been generated so far,
	// the ones whose text that emit completes included.
	OnCount func(tokens int)
}

// MaxTopLogprobs is the most alternatives GenerateRequest.TopLogprobs may ask for, as OpenAI.
const MaxTopLogprobs = 20

// TokenLogprob is one generated token and its log-probability.
type TokenLogprob struct {
	TopLogprob
	// Top are the most likely tokens at this position, most likely first; the chosen token is
	// among them only when it is one of the most likely.
	Top []TopLogprob
}

// TopLogprob is a token and its log-probability (natural log, ≤ 0).
type TopLogprob struct {
	// Token is the token's text; a token holding part of a UTF-8 character shows U+FFFD there.
	Token string
	// Bytes are the token's raw bytes.
	Bytes   []byte
	Logprob float32
}

// ToolsActive reports whether the request offers tools that the model may call.
func (r *GenerateRequest) ToolsActive() bool {
	return r.Messages != nil && len(r.Tools) > 0 && r.ToolChoice.Mode != ToolNone
}

// FinishReason says why generation ended.
type FinishReason int

// Finish reasons.
const (
	// FinishStop: end-of-generation token or a stop string.
	FinishStop FinishReason = iota + 1
	// FinishLength: MaxTokens reached or the context is full.
	FinishLength
	// FinishToolCalls: the model stopped after calling tools.
	FinishToolCalls
)

// String is the reason as OpenAI names it: "stop", "length" or "tool_calls".
func (r FinishReason) String() string {
	switch r {
	case FinishStop:
		return "stop"
	case FinishLength:
		return "length"
	case FinishToolCalls:
		return "tool_calls"
	}
	return "unknown"
}

// GenerateResult describes a finished generation.
type GenerateResult struct {
	FinishReason FinishReason
	// ToolCalls are the calls the model made (GenerateRequest.Tools).
	ToolCalls          []ToolCall
	PromptTokens       int
	CachedPromptTokens int
	CompletionTokens   int
	QueueDuration      time.Duration
	PromptDuration     time.Duration
	GenerateDuration   time.Duration
}

// Model is what every loaded model does, whatever its modality.
type Model interface {
	// Info describes the model.
	Info() ModelInfo
	// Stats counts the model's work so far.
	Stats() Stats
	// Close frees the model; it waits for running requests to end.
	Close() error
}

// LLM is a loaded language model. Generate may be called from many goroutines: requests beyond
// the model's parallel sequences wait in a queue.
type LLM interface {
	Model
	// Generate runs one request and calls emit with each new piece of text as it is produced
	// (never a split UTF-8 character). It stops when ctx is cancelled, returning ctx's error,
	// or when emit returns an error, returning that error.
	Generate(ctx context.Context, req GenerateRequest, emit func(text string) error) (GenerateResult, error)
}

// ModelInfo describes a loaded model, read from its file.
type ModelInfo struct {
	Architecture       string
	Description        string
	ParameterCount     int64
	SizeBytes          int64
	Quantization       string
	ContextLength      int
	TrainContextLength int
	Parallel           int
	// SampleRate is the rate, in Hz, of the audio a speech model takes (stt) or makes (tts,
	// its default voice); 0 for other models.
	SampleRate int
	// Voices are the voices a text-to-speech model speaks with; the first is the default.
	Voices []string
	// Languages are the languages a speech model knows, as BCP 47 tags, when it says.
	Languages []string
	// EmbeddingLength is the length of an embeddings model's vectors; Pooling how it pools
	// token vectors into them ("mean", "cls", "last"). Both are unset for other models.
	EmbeddingLength int
	Pooling         string
	// Inputs are what an LLM's messages may carry: "text", and "image" or "audio" when its
	// projector takes them.
	Inputs []string
}

// Clone returns a copy of i that shares no slices with it, for a model's Info to hand out.
func (i ModelInfo) Clone() ModelInfo {
	i.Voices = slices.Clone(i.Voices)
	i.Languages = slices.Clone(i.Languages)
	i.Inputs = slices.Clone(i.Inputs)
	return i
}

// Stats counts a model's requests and tokens since it was loaded.
type Stats struct {
	Active          int
	Queued          int
	Requests        int64
	PromptTokens    int64
	GeneratedTokens int64
	// GenerateTime is the time spent generating GeneratedTokens.
	GenerateTime time.Duration
}

// TokensPerSecond is the generation speed the stats measure, 0 before any token.
func (s Stats) TokensPerSecond() float64 {
	if s.GenerateTime <= 0 {
		return 0
	}
	return float64(s.GeneratedTokens) / s.GenerateTime.Seconds()
}

// DefaultEngine is the engine of a model whose declaration names none: llama.cpp.
const DefaultEngine = "llama_cpp"

// DefaultBatchSize is the tokens per decode batch when a model's options leave it unset.
const DefaultBatchSize = 512

// DefaultContextLength caps the context per sequence when a model's options leave it unset:
// a sequence gets min(the model's training context, DefaultContextLength) tokens, since a
// training length can be 128k tokens, whose KV cache would not fit a small machine.
const DefaultContextLength = 4096

// LoadOptions are the engine options of one declared model.
type LoadOptions struct {
	Path          string
	ContextLength int
	Threads       int
	BatchSize     int
	// GPULayers is how many layers go to accelerators: -1 all, 0 none.
	GPULayers int
	// MainGPU is -1 to spread the model over every GPU, else the one GPU that runs it all.
	MainGPU  int
	Parallel int
	// FlashAttention is "auto", "on" or "off".
	FlashAttention string
	// Voice is a text-to-speech model's default voice ("" for the engine's).
	Voice string
	// Language is a speech model's language, as a BCP 47 tag ("en", "es"; "" for the engine's).
	Language string
	// Projector is the multimodal projector file (a GGUF "mmproj") that lets an LLM take
	// images or audio; "" for a text-only model.
	Projector string
	// Vocoder is the file of the model that turns a text-to-speech LLM's audio codes into
	// sound (OuteTTS: a WavTokenizer decoder GGUF).
	Vocoder string
	// Pooling is an embeddings model's pooling ("mean", "cls", "last"); "" for its GGUF's.
	Pooling string
}

// LLMEngine loads language models.
type LLMEngine interface {
	// Name is the engine's name in syn4pse.toml.
	Name() string
	// LoadLLM loads a model; ctx cancels a load that has not finished.
	LoadLLM(ctx context.Context, opts LoadOptions) (LLM, error)
}

// Registry finds engines by modality and name. The zero value is empty and ready to use.
type Registry struct {
	mu   sync.RWMutex
	llms map[string]LLMEngine
	stts map[string]STTEngine
	ttss map[string]TTSEngine
	embs map[string]EmbedderEngine
	rrks map[string]RerankerEngine
}

// RegisterLLM adds an LLM engine under its name, replacing any with the same name.
func (r *Registry) RegisterLLM(e LLMEngine) { register(r, &r.llms, e) }

// RegisterSTT adds a speech-to-text engine under its name, replacing any with the same name.
func (r *Registry) RegisterSTT(e STTEngine) { register(r, &r.stts, e) }

// RegisterTTS adds a text-to-speech engine under its name, replacing any with the same name.
func (r *Registry) RegisterTTS(e TTSEngine) { register(r, &r.ttss, e) }

// RegisterEmbedder adds an embeddings engine under its name, replacing any with the same name.
func (r *Registry) RegisterEmbedder(e EmbedderEngine) { register(r, &r.embs, e) }

// RegisterReranker adds a reranking engine under its name, replacing any with the same name.
func (r *Registry) RegisterReranker(e RerankerEngine) { register(r, &r.rrks, e) }

func register[E interface{ Name() string }](r *Registry, m *map[string]E, e E) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if *m == nil {
		*m = make(map[string]E)
	}
	(*m)[e.Name()] = e
}

// LLM returns the LLM engine called name.
func (r *Registry) LLM(name string) (LLMEngine, error) { return lookup(r, r.llms, "llm", name) }

// STT returns the speech-to-text engine called name.
func (r *Registry) STT(name string) (STTEngine, error) { return lookup(r, r.stts, "stt", name) }

// TTS returns the text-to-speech engine called name.
func (r *Registry) TTS(name string) (TTSEngine, error) { return lookup(r, r.ttss, "tts", name) }

// Embedder returns the embeddings engine called name.
func (r *Registry) Embedder(name string) (EmbedderEngine, error) {
	return lookup(r, r.embs, "embeddings", name)
}

// Reranker returns the reranking engine called name.
func (r *Registry) Reranker(name string) (RerankerEngine, error) {
	return lookup(r, r.rrks, "rerank", name)
}

func lookup[E any](r *Registry, m map[string]E, modality, name string) (E, error) {
	r.mu.RLock()
	e, ok := m[name]
	r.mu.RUnlock()
	if !ok {
		return e, fmt.Errorf("this build has no %s engine %q (its engines: %s)", modality, name, r.Describe())
	}
	return e, nil
}

// LLMNames lists the names of the LLM engines, sorted.
func (r *Registry) LLMNames() []string { return r.Names("llm") }

// Names lists the names of the engines of a modality (llm, stt, tts, embeddings, rerank), sorted.
func (r *Registry) Names(modality string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var names []string
	switch modality {
	case "llm":
		names = keys(r.llms)
	case "stt":
		names = keys(r.stts)
	case "tts":
		names = keys(r.ttss)
	case "embeddings":
		names = keys(r.embs)
	case "rerank":
		names = keys(r.rrks)
	}
	sort.Strings(names)
	return names
}

func keys[E any](m map[string]E) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Describe lists the engines by modality, for messages: "llm: llama_cpp; stt: pocketsphinx".
func (r *Registry) Describe() string {
	var parts []string
	for _, modality := range []string{"llm", "stt", "tts", "embeddings", "rerank"} {
		if names := r.Names(modality); len(names) > 0 {
			parts = append(parts, modality+": "+strings.Join(names, ", "))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}
