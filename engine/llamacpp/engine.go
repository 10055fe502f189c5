// Package llamacpp is the llama.cpp engine ("llama_cpp" in syn4pse.toml): it loads GGUF models
// through native/llamacpp and runs chat and completion requests on them: one decode loop per
// model batches every running request into each llama_decode (continuous batching), with a
// KV-cache sequence (slot) per parallel request and prompt-prefix reuse across requests. A model
// loaded with a projector (mmproj) also takes images or audio in its messages (media.go).
package llamacpp

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/chattemplate"
	"github.com/ekisa-team/syn4pse/engine/toolcall"
	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// Name is the engine's name in syn4pse.toml.
const Name = engine.DefaultEngine

// Engine loads GGUF models with llama.cpp.
type Engine struct{}

// New returns the llama.cpp engine.
func New() *Engine {
	native.Init()
	return &Engine{}
}

// Name implements engine.LLMEngine.
func (*Engine) Name() string { return Name }

// LoadLLM implements engine.LLMEngine.
func (*Engine) LoadLLM(ctx context.Context, opts engine.LoadOptions) (engine.LLM, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := native.LoadModel(opts.Path, native.ModelParams{GPULayers: opts.GPULayers, MainGPU: opts.MainGPU})
	if err != nil {
		return nil, err
	}
	var proj *native.Projector
	if opts.Projector != "" {
		began := time.Now()
		proj, err = native.OpenProjector(opts.Projector, m, native.ProjectorParams{GPU: opts.GPULayers != 0, Threads: threads(opts)})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("mmproj %s: %w", opts.Projector, err)
		}
		slog.Debug("projector loaded", "path", opts.Projector, "audio", proj.Audio(), "vision", proj.Vision(), "took", time.Since(began))
	}
	llm, err := newModel(m, proj, opts)
	if err != nil {
		if proj != nil {
			proj.Close()
		}
		m.Close()
		return nil, err
	}
	return llm, nil
}

// newModel creates the context and starts the decode loop of m; proj is its multimodal
// projector, nil for a text-only model. The model owns both from then on.
func newModel(m *native.Model, proj *native.Projector, opts engine.LoadOptions) (*model, error) {
	parallel := max(opts.Parallel, 1)
	seqLen := opts.ContextLength
	if seqLen <= 0 {
		seqLen = min(m.TrainContextLength(), engine.DefaultContextLength)
	}
	batchSize := opts.BatchSize
	if batchSize <= 0 {
		batchSize = engine.DefaultBatchSize
	}
	// Every generating sequence puts a token in each step's batch.
	batchSize = max(batchSize, parallel)
	fa := native.FlashAttentionAuto
	switch opts.FlashAttention {
	case "on":
		fa = native.FlashAttentionOn
	case "off":
		fa = native.FlashAttentionOff
	}
	lctx, err := native.NewContext(m, native.ContextParams{
		ContextLength:  seqLen * parallel,
		BatchSize:      batchSize,
		Sequences:      parallel,
		UnifiedKV:      true,
		Threads:        threads(opts),
		FlashAttention: fa,
		// Workers sleep as soon as a decode ends instead of spinning (ggml's default 50):
		// measured on 2 cores with two models loaded, spinning idle pools cost 25% of the
		// busy model's generation speed.
		Poll: 0,
	})
	if err != nil {
		return nil, err
	}
	arch, _ := m.Meta("general.architecture")
	md := &model{
		native: m,
		lctx:   lctx,
		loop:   newLoop(lctx, m, proj, batchSize, seqLen, parallel),
		proj:   proj,
		bos:    m.TokenText(m.BOS()),
		eos:    m.TokenText(m.EOS()),
		info: engine.ModelInfo{
			Architecture:       arch,
			Description:        m.Description(),
			ParameterCount:     m.ParamCount(),
			SizeBytes:          m.SizeBytes(),
			Quantization:       m.FileType(),
			ContextLength:      seqLen,
			TrainContextLength: m.TrainContextLength(),
			Parallel:           parallel,
			Inputs:             inputs(proj),
		},
	}
	md.templateSource = m.ChatTemplate()
	if md.templateSource != "" {
		// A template gonja cannot parse is rendered by llama.cpp's built-in formats instead.
		md.template, _ = chattemplate.Parse(md.templateSource)
	}
	md.toolFormat = toolcall.Detect(md.templateSource)
	return md, nil
}

// inputs are what a model's messages may carry: text, and what its projector takes.
func inputs(proj *native.Projector) []string {
	in := []string{"text"}
	if proj != nil && proj.Vision() {
		in = append(in, "image")
	}
	if proj != nil && proj.Audio() {
		in = append(in, "audio")
	}
	return in
}

// threads is the CPU threads a model computes with: all the cores unless its options say.
func threads(opts engine.LoadOptions) int {
	if opts.Threads > 0 {
		return opts.Threads
	}
	return runtime.NumCPU()
}

// SystemInfo describes the compiled llama.cpp: SIMD features and backends.
func SystemInfo() string { return native.SystemInfo() }

// BackendOptions says where the native backend libraries are and which CPU variant to use.
type BackendOptions = native.BackendOptions

// Backends reports the CPU variant and devices in use.
type Backends = native.Backends

// LoadBackends loads the native backends (the CPU variant for this machine, GPU libraries) once
// per process, before any model; later calls return the first result. New loads them with
// default options when nothing called LoadBackends before.
func LoadBackends(opts BackendOptions) (*Backends, error) { return native.LoadBackends(opts) }

// RequiredGPUBackends are the GPU backends this binary was built to use (build tags cuda,
// vulkan, metal): LoadBackends fails when one of them is missing.
func RequiredGPUBackends() []string { return requiredGPU }

// Devices lists the compute devices with their memory as of now.
func Devices() []native.Device { return native.Devices() }

// Builtin is the CPU variant name of the generic code compiled into the binary.
const Builtin = native.Builtin

// Quantize converts the GGUF model src to dst with weights of type typ (q4_0, q4_k_m, q8_0, f16).
func Quantize(src, dst, typ string, threads int) error {
	return native.Quantize(src, dst, typ, threads)
}
