// Command syn4pse is the SYN4PSE node (`syn4pse serve`) and its client commands, which talk gRPC
// to a node.
//
// Exit codes: 0 success, 1 a failure while running, 2 a usage or configuration error.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/logtail"
	"github.com/ekisa-team/syn4pse/node/requestid"
)

// usageError marks errors that exit with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	root := newRootCmd()
	err := root.Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, config.ErrInvalid) {
		os.Exit(2)
	}
	os.Exit(1)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "syn4pse",
		Short: "Run local AI models across the machines you own",
		Long: `SYN4PSE runs local AI models (LLMs first, through llama.cpp) and serves them over gRPC
and an OpenAI-compatible HTTP API.

Start a node with "syn4pse serve"; the other commands talk to a running node over gRPC.
Configuration: built-in defaults < syn4pse.toml < SYN4PSE_* environment < flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	config.RegisterFlags(root.PersistentFlags())
	root.PersistentFlags().String("addr", "", "gRPC address of the node for client commands (default: server.host:server.grpc_port from the config)")
	addAccessFlags(root)
	root.AddCommand(newServeCmd(), newRunCmd(), newTranscribeCmd(), newSpeakCmd(), newEmbedCmd(), newModelsCmd(), newStatusCmd(), newHealthCmd(), newMeshCmd(), newPeersCmd(), newPsCmd(), newProbeCmd())
	return root
}

// loadConfig reads the configuration with the command's flags.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	return config.Load(config.LoadOptions{Env: os.Environ(), Flags: allFlags(cmd)})
}

// allFlags merges the persistent and local flags a command sees into one set for config.Load.
func allFlags(cmd *cobra.Command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	fs.AddFlagSet(cmd.Flags())
	fs.AddFlagSet(cmd.InheritedFlags())
	return fs
}

func setupLogging(cfg *config.Config) {
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	// A request's log lines name its request ID (see node/requestid); the node serves the last
	// ones at GET /api/logs (node/logtail).
	slog.SetDefault(slog.New(requestid.LogHandler(logtail.Recent.Wrap(h))))
}
