package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/loadprobe"
)

// newProbeCmd is the hidden `probe-model`: the child process of a node's load probe
// (node/loadprobe), not meant to be run by hand. It exits 0 when the model loads, 1 with an
// "error: " line when it cannot, and dies with the engine when llama.cpp crashes on the file.
func newProbeCmd() *cobra.Command {
	var spec loadprobe.Spec
	var eng config.Engine
	cmd := &cobra.Command{
		Use:    loadprobe.Command,
		Short:  "Load a model file once and exit (the child process of a node's load probe)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return node.RunLoadProbe(cmd.Context(), eng, spec)
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Modality, "modality", "llm", "the model's modality")
	f.StringVar(&spec.Engine, "engine", "llama_cpp", "the model's engine")
	f.StringVar(&spec.Path, "path", "", "the model file")
	f.StringVar(&spec.Projector, "mmproj", "", "the multimodal projector file")
	f.StringVar(&spec.Vocoder, "vocoder", "", "the vocoder file")
	f.StringVar(&spec.Pooling, "pooling", "", "an embeddings model's pooling")
	f.StringVar(&eng.LibraryPath, "library-path", "", "the native backend libraries' folder")
	f.StringVar(&eng.CPUVariant, "cpu-variant", "auto", "the CPU variant")
	return cmd
}

// probeCommand is the command a node runs for a load probe: this executable's probe-model.
func probeCommand() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil // no probes: the node still checks every GGUF
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return []string{exe, loadprobe.Command}
}
