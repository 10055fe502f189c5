package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/ekisa-team/syn4pse/internal/durable"
	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/p2p"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

func newMeshCmd() *cobra.Command {
	mesh := &cobra.Command{
		Use:   "mesh",
		Short: "Create, share and join a private mesh of nodes",
		Long: `A mesh is the set of nodes that hold the same 32-byte swarm key (a libp2p private
network): no host without the key can connect. On the first node:

  syn4pse mesh init                 create the key (in the data dir)
  syn4pse serve                     start the node
  syn4pse mesh invite               print an invite token (last line)

On every other node:

  syn4pse mesh join TOKEN           store the key and the first node's addresses
  syn4pse serve

The mesh runs over TCP: QUIC cannot carry a private-network key.`,
	}
	var force bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new mesh: a swarm key in the data dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dataDir, err := dataDir(cmd)
			if err != nil {
				return err
			}
			path := filepath.Join(dataDir, node.SwarmKeyFile)
			if _, err := os.Stat(path); err == nil && !force {
				return usageError{fmt.Errorf("%s exists: this node is already in a mesh (--force replaces the key and leaves that mesh)", path)}
			}
			key, err := p2p.GenerateSwarmKey()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return err
			}
			if err := p2p.SaveSwarmKey(path, key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created mesh %s (key in %s)\nstart the node (syn4pse serve), then run `syn4pse mesh invite` to add other nodes\n", key.Fingerprint(), path)
			return nil
		},
	}
	initCmd.Flags().BoolVar(&force, "force", false, "replace an existing swarm key")

	var expires time.Duration
	invite := &cobra.Command{
		Use:   "invite",
		Short: "Print an invite token for another node (asks the running node for its addresses)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dataDir, err := dataDir(cmd)
			if err != nil {
				return err
			}
			key, err := p2p.LoadSwarmKey(filepath.Join(dataDir, node.SwarmKeyFile))
			if errors.Is(err, fs.ErrNotExist) {
				return usageError{errors.New("this node is in no mesh: run `syn4pse mesh init` first")}
			}
			if err != nil {
				return err
			}
			var st *pb.MeshStatusResponse
			err = withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				st, err = pb.NewNodeServiceClient(conn).MeshStatus(ctx, &pb.MeshStatusRequest{})
				if err != nil {
					return rpcError(conn.Target(), err)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if !st.GetEnabled() {
				return errors.New("the running node is standalone: restart it (syn4pse serve) so it joins the mesh, then invite")
			}
			inv := p2p.Invite{Key: key}
			if expires > 0 {
				inv.Expires = time.Now().Add(expires)
			}
			for _, s := range st.GetListenAddrs() {
				a, err := multiaddr.NewMultiaddr(s)
				if err == nil {
					inv.Addrs = append(inv.Addrs, a)
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "invite to mesh %s, node %s", key.Fingerprint(), st.GetPeerId())
			if !inv.Expires.IsZero() {
				fmt.Fprintf(out, ", valid until %s", inv.Expires.Format(time.RFC3339))
			}
			fmt.Fprintln(out, "\non the other node run: syn4pse mesh join TOKEN   (TOKEN is the next line)")
			fmt.Fprintln(out, inv.Encode())
			return nil
		},
	}
	invite.Flags().DurationVar(&expires, "expires", 0, "the invite expires after this long (e.g. 24h); 0 never")

	join := &cobra.Command{
		Use:   "join TOKEN",
		Short: "Join a mesh with an invite token: stores the key and the inviting node's addresses",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("join needs the TOKEN that `syn4pse mesh invite` printed")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := p2p.DecodeInvite(strings.TrimSpace(args[0]), time.Now())
			if err != nil {
				return usageError{err}
			}
			dataDir, err := dataDir(cmd)
			if err != nil {
				return err
			}
			keyPath := filepath.Join(dataDir, node.SwarmKeyFile)
			if old, err := p2p.LoadSwarmKey(keyPath); err == nil && old != inv.Key && !force {
				return usageError{fmt.Errorf("this node is already in mesh %s: --force leaves it for %s", old.Fingerprint(), inv.Key.Fingerprint())}
			}
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return err
			}
			var lines strings.Builder
			lines.WriteString("# peers from the invite of `syn4pse mesh join`; dialled at start\n")
			for _, a := range inv.Addrs {
				lines.WriteString(a.String() + "\n")
			}
			if err := durable.WriteFile(filepath.Join(dataDir, node.BootstrapFile), []byte(lines.String()), 0o600); err != nil {
				return err
			}
			if err := p2p.SaveSwarmKey(keyPath, inv.Key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "joined mesh %s with %d bootstrap address(es); (re)start the node: syn4pse serve\n", inv.Key.Fingerprint(), len(inv.Addrs))
			return nil
		},
	}
	join.Flags().BoolVar(&force, "force", false, "leave the current mesh for the invite's")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show this node's place in the mesh",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error {
				st, err := pb.NewNodeServiceClient(conn).MeshStatus(ctx, &pb.MeshStatusRequest{})
				if err != nil {
					return rpcError(conn.Target(), err)
				}
				out := cmd.OutOrStdout()
				if !st.GetEnabled() {
					fmt.Fprintf(out, "standalone: node %s is in no mesh (syn4pse mesh init, or mesh join TOKEN)\n", st.GetPeerId())
					return nil
				}
				fmt.Fprintf(out, "peer id     %s\nconnected   %d peer(s)\nknown       %d peer(s) announcing\ndht         %d peer(s) in the routing table\nmdns        %v\n",
					st.GetPeerId(), st.GetConnectedPeers(), st.GetKnownPeers(), st.GetDhtRoutingTableSize(), st.GetMdns())
				if st.GetAllowlistSize() > 0 {
					fmt.Fprintf(out, "allowlist   %d peer(s)\n", st.GetAllowlistSize())
				}
				for _, a := range st.GetListenAddrs() {
					fmt.Fprintf(out, "listening   %s\n", a)
				}
				return nil
			})
		},
	}
	mesh.AddCommand(initCmd, invite, join, status)
	return mesh
}

func newPeersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "List the mesh's peers: models, load, round trip, last seen, links (mesh peers each is connected to)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNode(cmd, func(ctx context.Context, conn *grpc.ClientConn) error {
				res, err := pb.NewNodeServiceClient(conn).ListPeers(ctx, &pb.ListPeersRequest{})
				if err != nil {
					return rpcError(conn.Target(), err)
				}
				out := cmd.OutOrStdout()
				if len(res.GetPeers()) == 0 {
					fmt.Fprintln(out, "no peers (syn4pse mesh status says why)")
					return nil
				}
				fmt.Fprintf(out, "%-54s %-16s %8s %9s %7s %5s  %s\n", "PEER", "NAME", "RTT", "SEEN", "SCORE", "LINKS", "MODELS (loaded*, free slots/queue)")
				for _, p := range res.GetPeers() {
					var models []string
					for _, m := range p.GetCapability().GetModels() {
						mark := ""
						if m.GetLoaded() {
							mark = "*"
						}
						models = append(models, fmt.Sprintf("%s%s %d/%d", m.GetName(), mark, m.GetFreeSlots(), m.GetQueueDepth()))
					}
					seen := time.Since(time.UnixMilli(p.GetLastSeenUnixMs())).Round(time.Second)
					fmt.Fprintf(out, "%-54s %-16s %7.1fms %8s ago %7.1f %5d  %s\n", p.GetPeerId(), p.GetNodeName(), p.GetRttMs(), seen, p.GetGossipScore(),
						len(p.GetCapability().GetLinks()), strings.Join(models, ", "))
					if p.GetBanned() {
						fmt.Fprintf(out, "    banned: left out of routing and pulls after failing router.ban_after times in a row\n")
					}
					if hw := p.GetCapability().GetHardware(); hw != nil {
						fmt.Fprintf(out, "    %s\n", hardwareLine(hw))
					}
					for _, a := range p.GetAddrs() {
						fmt.Fprintf(out, "    %s\n", a)
					}
				}
				return nil
			})
		},
	}
}

// dataDir is the configured data dir.
func dataDir(cmd *cobra.Command) (string, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return "", err
	}
	return cfg.DataDir, nil
}
