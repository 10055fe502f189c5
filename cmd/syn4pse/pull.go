package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

func newPullCmd() *cobra.Command {
	var source, sha string
	cmd := &cobra.Command{
		Use:   "pull MODEL",
		Short: "Fetch a model into the node's store: from a mesh peer that has it, else from --source",
		Long: `Fetch a model into the node's store (data_dir/models), verified by sha256, resuming after
a dropped connection. A peer of the mesh that has the model serves it first; else --source:

  syn4pse models pull qwen --source hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf
  syn4pse models pull tiny --source https://example.org/tiny.gguf --sha256 <hex>
  syn4pse models pull qwen          (a model declared with a source, or one a peer has)

HF_TOKEN (in the node's environment) is sent to huggingface.co for gated repositories.`,
		Args: oneModel("pull"),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer conn.Close()
			stream, err := pb.NewModelServiceClient(conn).PullModel(cmd.Context(), &pb.PullModelRequest{Name: args[0], Source: source, Sha256: sha})
			if err != nil {
				return rpcError(conn.Target(), err)
			}
			bar := progressBar{out: cmd.ErrOrStderr()}
			for {
				ev, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					bar.finish()
					return nil
				}
				if err != nil {
					bar.finish()
					return rpcError(conn.Target(), err)
				}
				bar.update(ev)
				if ev.GetDone() {
					bar.finish()
					fmt.Fprintf(cmd.OutOrStdout(), "pulled %s (%s, %s)\n", args[0], humanBytes(ev.GetTotalBytes()), ev.GetDigest())
				}
			}
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "http(s) URL or hf://OWNER/REPO/FILE[@REVISION]")
	cmd.Flags().StringVar(&sha, "sha256", "", "expected sha256 of the file (hex)")
	return cmd
}

// progressBar draws one line: status, a bar, bytes, speed and time left.
type progressBar struct {
	out   io.Writer
	drawn bool
	last  time.Time
}

func (b *progressBar) update(p *pb.PullProgress) {
	if time.Since(b.last) < 100*time.Millisecond && !p.GetDone() {
		return
	}
	b.last = time.Now()
	const width = 30
	filled := 0
	if p.GetTotalBytes() > 0 {
		filled = int(float64(width) * float64(p.GetCompletedBytes()) / float64(p.GetTotalBytes()))
	}
	eta := "--"
	if s := p.GetBytesPerSecond(); s > 0 && p.GetTotalBytes() > p.GetCompletedBytes() {
		eta = (time.Duration(float64(p.GetTotalBytes()-p.GetCompletedBytes())/s) * time.Second).Round(time.Second).String()
	}
	from := p.GetFrom()
	if len(from) > 40 {
		from = from[:37] + "..."
	}
	fmt.Fprintf(b.out, "\r%-11s [%s%s] %9s/%-9s %9s/s  eta %-6s %s", p.GetStatus(), strings.Repeat("=", min(filled, width)),
		strings.Repeat(" ", width-min(filled, width)), humanBytes(p.GetCompletedBytes()), humanBytes(p.GetTotalBytes()),
		humanBytes(int64(p.GetBytesPerSecond())), eta, from)
	b.drawn = true
}

func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.out)
		b.drawn = false
	}
}

func newRmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm MODEL",
		Short: "Delete a pulled model from the store (refused while loaded unless --force)",
		Args:  oneModel("rm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error {
				res, err := pb.NewModelServiceClient(conn).DeleteModel(ctx, &pb.DeleteModelRequest{Name: args[0], Force: force})
				if err != nil {
					return rpcError(conn.Target(), err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s, freed %s\n", args[0], humanBytes(res.GetFreedBytes()))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "unload the model first if it is loaded")
	return cmd
}
