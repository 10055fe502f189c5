package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// dial connects to the node named by --addr, or the configured local node, with the API key
// and TLS settings of clientAccess. With --addr the configuration is optional: a client may
// run where no valid one is.
func dial(cmd *cobra.Command) (*grpc.ClientConn, error) {
	addr, _ := cmd.Flags().GetString("addr")
	cfg, err := loadConfig(cmd)
	if addr == "" {
		if err != nil {
			return nil, err
		}
		addr = cfg.Server.GRPCAddr()
	} else if err != nil {
		cfg = nil
	}
	opts, err := clientAccess(cmd, cfg)
	if err != nil {
		return nil, err
	}
	// Replies as large as a node sends (server.grpc_max_message), not gRPC's default 4 MiB.
	var limits config.Limits
	if cfg != nil {
		limits = cfg.Server.Limits
	}
	size := int(min(limits.WithDefaults().GRPCMaxMessage, math.MaxInt32))
	opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(size), grpc.MaxCallSendMsgSize(size)))
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, usageError{fmt.Errorf("node address %q: %w", addr, err)}
	}
	return conn, nil
}

// withNode dials the node and calls fn with a context bounded for a quick RPC.
func withNode(cmd *cobra.Command, fn func(ctx context.Context, conn *grpc.ClientConn) error) error {
	conn, err := dial(cmd)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	return fn(ctx, conn)
}

// rpcError makes a gRPC failure readable, with a hint when no node answers.
func rpcError(addr string, err error) error {
	st := status.Convert(err)
	if st.Code() == codes.Unavailable && strings.Contains(st.Message(), "connection error") {
		return fmt.Errorf("no node answers at %s (is `syn4pse serve` running? or set --addr): %s", strings.TrimPrefix(addr, "passthrough:///"), st.Message())
	}
	return errors.New(st.Message())
}

func newModelsCmd() *cobra.Command {
	models := &cobra.Command{Use: "models", Short: "Manage the models of a node"}
	models.AddCommand(newLoadCmd(), newUnloadCmd(), newPullCmd(), newRmCmd())
	models.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the node's models, their state and why one is unavailable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error { return listModels(ctx, cmd, conn) })
		},
	})
	return models
}

func listModels(ctx context.Context, cmd *cobra.Command, conn *grpc.ClientConn) error {
	res, err := pb.NewModelServiceClient(conn).ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		return rpcError(conn.Target(), err)
	}
	out := cmd.OutOrStdout()
	if len(res.GetModels()) == 0 {
		fmt.Fprintln(out, "no models configured: add one to syn4pse.toml (see the README)")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tENGINE\tSTATE\tSIZE\tDETAILS")
	for _, m := range res.GetModels() {
		details := m.GetUnavailableReason()
		if d := m.GetDetails(); d != nil {
			details = fmt.Sprintf("%s %s ctx %d", d.GetArchitecture(), d.GetQuantization(), d.GetContextLength())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.GetName(), kindName(m.GetModality()), m.GetEngine(), stateName(m.GetState()), humanBytes(m.GetSizeBytes()), details)
	}
	tw.Flush()
	fmt.Fprintf(out, "store: %s on disk\n", humanBytes(res.GetStoreBytes()))
	return nil
}

// kindName names a model's modality as syn4pse.toml does.
func kindName(m pb.Modality) string {
	if name := api.ModalityName(m); name != "" {
		return name
	}
	return "-"
}

func stateName(s pb.ModelState) string {
	switch s {
	case pb.ModelState_MODEL_STATE_LOADED:
		return "loaded"
	case pb.ModelState_MODEL_STATE_AVAILABLE:
		return "available"
	case pb.ModelState_MODEL_STATE_LOADING:
		return "loading"
	case pb.ModelState_MODEL_STATE_UNAVAILABLE:
		return "unavailable"
	}
	return "unknown"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the node's identity, health, engines and models",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error { return showStatus(ctx, cmd, conn) })
		},
	}
}

func showStatus(ctx context.Context, cmd *cobra.Command, conn *grpc.ClientConn) error {
	node := pb.NewNodeServiceClient(conn)
	info, err := node.GetInfo(ctx, &pb.GetInfoRequest{})
	if err != nil {
		return rpcError(conn.Target(), err)
	}
	health, err := node.Health(ctx, &pb.HealthRequest{})
	if err != nil {
		return rpcError(conn.Target(), err)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "node      %s (%s)\n", info.GetNodeId(), info.GetVersion())
	fmt.Fprintf(out, "health    %s: %d model(s) ready, %d unavailable\n", healthName(health.GetStatus()), health.GetModelsReady(), health.GetModelsUnavailable())
	fmt.Fprintf(out, "grpc      %s\nhttp      %s\n", info.GetGrpcAddr(), info.GetHttpAddr())
	fmt.Fprintf(out, "uptime    %s\n", time.Since(time.Unix(info.GetStartedAtUnix(), 0)).Round(time.Second))
	hw := info.GetHardware()
	fmt.Fprintf(out, "hardware  %d cores, %s RAM\n", hw.GetCpuCores(), humanBytes(hw.GetMemoryBytes()))
	fmt.Fprintf(out, "cpu code  %s\n", cpuVariantText(hw.GetCpuVariant()))
	for _, d := range hw.GetDevices() {
		mem := ""
		if d.GetKind() != "cpu" {
			mem = fmt.Sprintf(", %s free of %s", humanBytes(d.GetMemoryFreeBytes()), humanBytes(d.GetMemoryTotalBytes()))
		}
		fmt.Fprintf(out, "device    %s (%s: %s%s)\n", d.GetName(), d.GetKind(), d.GetDescription(), mem)
	}
	for name, desc := range info.GetEngineInfo() {
		fmt.Fprintf(out, "engine    %s: %s\n", name, desc)
	}
	return nil
}

// hardwareLine sums up a peer's machine: cores, RAM, CPU code and each GPU's free memory.
func hardwareLine(hw *pb.Hardware) string {
	parts := []string{fmt.Sprintf("%d cores, %s RAM", hw.GetCpuCores(), humanBytes(hw.GetMemoryBytes()))}
	if v := hw.GetCpuVariant(); v != "" {
		parts = append(parts, "cpu "+v)
	}
	for _, d := range hw.GetDevices() {
		if d.GetKind() != "cpu" {
			parts = append(parts, fmt.Sprintf("%s %s (%s free of %s)", d.GetKind(), d.GetName(), humanBytes(d.GetMemoryFreeBytes()), humanBytes(d.GetMemoryTotalBytes())))
		}
	}
	return strings.Join(parts, ", ")
}

// cpuVariantText explains the CPU code a node runs.
func cpuVariantText(variant string) string {
	switch variant {
	case "":
		return "unknown (an older node)"
	case "builtin":
		return "builtin (generic, no variant library found: slow; see `task build-third-party`)"
	}
	return variant + " (variant library chosen for this CPU)"
}

func newHealthCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Exit 0 when the node answers and serves (for container health checks and scripts)",
		Long: "health asks the node's standard gRPC health service and prints \"serving\"; it exits 1 when\n" +
			"the node does not answer or is not serving. Docker's HEALTHCHECK runs it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error {
				res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
				if err != nil {
					return rpcError(conn.Target(), err)
				}
				if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					return fmt.Errorf("node at %s is %s", strings.TrimPrefix(conn.Target(), "passthrough:///"), res.GetStatus())
				}
				fmt.Fprintln(cmd.OutOrStdout(), "serving")
				return nil
			})
		},
	}
}

func healthName(s pb.HealthResponse_Status) string {
	if s == pb.HealthResponse_STATUS_SERVING {
		return "serving"
	}
	return "not serving"
}
