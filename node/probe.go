package node

import (
	"context"
	"runtime"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/engine/espeak"
	"github.com/ekisa-team/syn4pse/engine/flite"
	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/engine/outetts"
	"github.com/ekisa-team/syn4pse/engine/pocketsphinx"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/loadprobe"
	"github.com/ekisa-team/syn4pse/node/models"
)

// newRegistry registers every engine this build has.
func newRegistry() *engine.Registry {
	var registry engine.Registry
	llama := llamacpp.New()
	registry.RegisterLLM(llama)
	registry.RegisterEmbedder(llama)
	registry.RegisterReranker(llama)
	registry.RegisterSTT(pocketsphinx.New())
	registry.RegisterTTS(flite.New())
	registry.RegisterTTS(espeak.New())
	registry.RegisterTTS(outetts.New())
	return &registry
}

// loadProbe is the catalog's load probe (node/loadprobe): nil, running none, when
// models.load_probe is off or nothing set the command that runs one.
func loadProbe(cfg *config.Config) func(context.Context, models.Decl) error {
	if !cfg.Lifecycle.LoadProbe || len(cfg.Lifecycle.ProbeCommand) == 0 {
		return nil
	}
	command := append(append([]string{}, cfg.Lifecycle.ProbeCommand...), "--cpu-variant", cfg.Engine.CPUVariant)
	if cfg.Engine.LibraryPath != "" {
		command = append(command, "--library-path", cfg.Engine.LibraryPath)
	}
	return loadprobe.New(command, nil, cfg.DataDir).Probe
}

// RunLoadProbe is the child's side of a load probe (`syn4pse probe-model`): it loads the backends
// as eng says, loads the model of s on the CPU with the smallest context, and frees it. A file
// that crashes llama.cpp ends the process here, which the parent reads as the probe's result.
func RunLoadProbe(ctx context.Context, eng config.Engine, s loadprobe.Spec) error {
	if _, err := loadBackends(&config.Config{Engine: eng}); err != nil {
		return err
	}
	opts := engine.LoadOptions{Path: s.Path, ContextLength: 256, BatchSize: 256, Parallel: 1, Threads: min(runtime.NumCPU(), 2),
		MainGPU: -1, FlashAttention: "auto", Projector: s.Projector, Vocoder: s.Vocoder, Pooling: s.Pooling}
	model, err := models.LoadWith(ctx, newRegistry(), s.Modality, s.Engine, opts)
	if err != nil {
		return err
	}
	return model.Close()
}
