package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ekisa-team/syn4pse/node"
)

func newServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run a node: load the configured models and serve gRPC and HTTP",
		Long: `Run a node. It loads the models declared in syn4pse.toml and serves:
  gRPC  on server.host:server.grpc_port (default 127.0.0.1:50051)
  HTTP  on server.host:server.http_port (default 127.0.0.1:8080): OpenAI-compatible
        /v1/chat/completions, /v1/completions, /v1/models, and /healthz.

With server.api_keys (SYN4PSE_API_KEYS) set, every request but health checks needs
"Authorization: Bearer KEY"; a node on a non-loopback server.host without keys refuses
to start unless server.allow_unauthenticated = true. server.tls_cert and server.tls_key
serve TLS on every port.

SIGINT or SIGTERM stops the node gracefully: running streams finish (up to
server.shutdown_timeout), then the models are freed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			setupLogging(cfg)
			cfg.Lifecycle.ProbeCommand = probeCommand()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return node.Run(ctx, cfg)
		},
	}
}
