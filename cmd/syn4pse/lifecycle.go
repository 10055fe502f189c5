package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// oneModel checks that a command got exactly one MODEL.
func oneModel(verb string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{fmt.Errorf("%s needs one MODEL (syn4pse models list shows them)", verb)}
		}
		return nil
	}
}

func newLoadCmd() *cobra.Command {
	var keepAlive string
	cmd := &cobra.Command{
		Use:   "load MODEL",
		Short: "Load a model now and keep it loaded for --keep-alive",
		Args:  oneModel("load"),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer conn.Close()
			start := time.Now()
			res, err := pb.NewModelServiceClient(conn).LoadModel(cmd.Context(), &pb.LoadModelRequest{Name: args[0], KeepAlive: keepAlive})
			if err != nil {
				return rpcError(conn.Target(), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s loaded (%s, keep-alive %s) in %s\n", res.GetModel().GetName(),
				humanBytes(res.GetModel().GetMemoryBytes()), res.GetModel().GetKeepAlive(), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&keepAlive, "keep-alive", "", `how long it stays loaded when idle: "10m", "0", "-1" (forever); default models.keep_alive`)
	return cmd
}

func newUnloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unload MODEL",
		Short: "Unload a model (once its running requests end)",
		Args:  oneModel("unload"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error {
				if _, err := pb.NewModelServiceClient(conn).UnloadModel(ctx, &pb.UnloadModelRequest{Name: args[0]}); err != nil {
					return rpcError(conn.Target(), err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s unloads as soon as it is idle\n", args[0])
				return nil
			})
		},
	}
}

func newPsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ps",
		Short: "List the loaded models: memory, requests, idle time, when they unload",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error {
				res, err := pb.NewModelServiceClient(conn).ListRunning(ctx, &pb.ListRunningRequest{})
				if err != nil {
					return rpcError(conn.Target(), err)
				}
				out := cmd.OutOrStdout()
				if len(res.GetModels()) == 0 {
					fmt.Fprintln(out, "no model loaded")
					return nil
				}
				fmt.Fprintf(out, "%-24s %10s %8s %10s  %s\n", "NAME", "MEMORY", "ACTIVE", "IDLE", "UNLOADS")
				for _, m := range res.GetModels() {
					unloads := "when idle"
					switch {
					case m.GetExpiresAtUnixMs() > 0:
						unloads = "in " + time.Until(time.UnixMilli(m.GetExpiresAtUnixMs())).Round(time.Second).String()
					case m.GetKeepAlive() == "-1":
						unloads = "never (keep-alive -1)"
					case m.GetActiveRequests() > 0:
						unloads = "after its requests"
					}
					idle := "-"
					if m.GetIdleMs() > 0 {
						idle = (time.Duration(m.GetIdleMs()) * time.Millisecond).Round(time.Second).String()
					}
					fmt.Fprintf(out, "%-24s %10s %8d %10s  %s\n", m.GetName(), humanBytes(m.GetMemoryBytes()), m.GetActiveRequests(), idle, unloads)
				}
				return nil
			})
		},
	}
}
