// Package node is one SYN4PSE node: it wires the configuration, the engines, the model catalog
// and the API servers (gRPC and HTTP), and shuts them down without cutting running streams.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/ekisa-team/syn4pse/engine/llamacpp"
	"github.com/ekisa-team/syn4pse/node/access"
	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/httpapi"
	"github.com/ekisa-team/syn4pse/node/httpapi/dashboard"
	"github.com/ekisa-team/syn4pse/node/logtail"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/pull"
	"github.com/ekisa-team/syn4pse/node/models/store"
	"github.com/ekisa-team/syn4pse/node/ollamaapi"
	"github.com/ekisa-team/syn4pse/node/router"
	"github.com/ekisa-team/syn4pse/p2p"
	"github.com/ekisa-team/syn4pse/p2p/rpc"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Version is the node's version, set at build time with -ldflags "-X ...node.Version=...".
var Version = "dev"

// Node is a running node. Start returns one; Shutdown stops it.
type Node struct {
	cfg        *config.Config
	id         string
	models     *models.Manager
	grpcServer *grpc.Server
	health     *health.Server
	httpServer *http.Server
	grpcLn     net.Listener
	httpLn     net.Listener
	// ollamaServer and ollamaLn serve Ollama's API; nil where server.ollama_port is -1.
	ollamaServer *http.Server
	ollamaLn     net.Listener
	mesh         *mesh // nil when standalone
	background   sync.WaitGroup
	cancel       context.CancelFunc
	served       chan error
}

// Start binds the API ports, starts serving and starts loading the configured models in the
// background (requests for a model still loading wait for it). It returns once both servers
// accept connections.
func Start(ctx context.Context, cfg *config.Config) (*Node, error) {
	if err := cfg.Server.CheckAccess(); err != nil {
		return nil, err
	}
	serverTLS, err := access.ServerTLS(cfg.Server.TLSCert, cfg.Server.TLSKey)
	if err != nil {
		return nil, err
	}
	publicConfig, err := cfg.Public() // GET /api/config
	if err != nil {
		return nil, fmt.Errorf("render the configuration for /api/config: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	grpcLn, err := listen("gRPC", cfg.Server.GRPCAddr(), "server.grpc_port", "SYN4PSE_SERVER_GRPC_PORT")
	if err != nil {
		return nil, err
	}
	httpLn, err := listen("HTTP", cfg.Server.HTTPAddr(), "server.http_port", "SYN4PSE_SERVER_HTTP_PORT")
	if err != nil {
		grpcLn.Close()
		return nil, err
	}
	var ollamaLn net.Listener
	if cfg.Server.Ollama {
		if ollamaLn, err = listen("Ollama API", cfg.Server.OllamaAddr(), "server.ollama_port", "SYN4PSE_SERVER_OLLAMA_PORT"); err != nil {
			grpcLn.Close()
			httpLn.Close()
			return nil, err
		}
	}
	grpcLn, httpLn = access.Listener(grpcLn, serverTLS, "h2"), access.Listener(httpLn, serverTLS, "h2", "http/1.1")
	ollamaLn = access.Listener(ollamaLn, serverTLS, "h2", "http/1.1")
	started := false
	defer func() {
		if !started {
			grpcLn.Close()
			httpLn.Close()
			if ollamaLn != nil {
				ollamaLn.Close()
			}
		}
	}()

	backends, err := loadBackends(cfg)
	if err != nil {
		return nil, err
	}
	registry := newRegistry()
	budget := cfg.Lifecycle.MaxMemory
	if budget == 0 {
		budget = totalMemory() / 10 * 8
	}
	modelStore, err := store.Open(filepath.Join(cfg.DataDir, "models"))
	if err != nil {
		return nil, fmt.Errorf("model store: %w", err)
	}
	// Nothing is in flight yet: blobs no manifest names (a crash between a blob's commit and its
	// manifest, or inside a delete) go now.
	if freed, err := modelStore.Prune(); err != nil {
		slog.Warn("model store", "err", err)
	} else if freed > 0 {
		slog.Info("model store: removed blobs no model uses", "freed_bytes", freed)
	}
	decls, toPull := pull.ResolveDecls(cfg.Models, modelStore)
	var onChange func()
	catalogDecls := make([]models.Decl, len(decls))
	for i, d := range decls {
		catalogDecls[i] = d.Decl()
	}
	catalog := models.New(registry, catalogDecls, models.Options{DataDir: cfg.DataDir, KeepAlive: cfg.Lifecycle.KeepAlive,
		MaxMemory: budget, GPUMemory: gpuBudgets(backends), MaxQueue: cfg.Lifecycle.MaxQueue, Probe: loadProbe(cfg), OnChange: func() {
			if onChange != nil {
				onChange()
			}
		}})

	pl := pull.New(modelStore, catalog, cfg.Models)
	pl.RegisterStored()
	for _, d := range toPull {
		catalog.MarkUnavailable(d.Name, fmt.Sprintf("being pulled from %s; it serves once `syn4pse models list` shows it available", d.Source))
	}

	identity, err := p2p.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(identity)
	if err != nil {
		return nil, err
	}
	nodeID := self.String()
	inference := &api.InferenceService{Models: catalog, NodeID: nodeID, MaxAudio: cfg.Server.MaxAudio, Limits: cfg.Server.Limits}
	isRemote := func(ctx context.Context) bool {
		_, remote := rpc.PeerFromContext(ctx)
		return remote
	}
	modelSvc := &api.ModelService{Models: catalog, AllowRemote: cfg.Lifecycle.AllowRemote, IsRemote: isRemote, Pull: func(ctx context.Context, req *pb.PullModelRequest, progress func(*pb.PullProgress)) error {
		_, err := pl.Pull(ctx, req, progress)
		return err
	}, Delete: pl.Delete, DiskUsage: modelStore.DiskUsage}
	nodeSvc := &api.NodeService{
		Models: catalog, NodeID: nodeID, Name: nodeName(cfg), Version: Version,
		GRPCAddr: grpcLn.Addr().String(), HTTPAddr: httpLn.Addr().String(), Started: time.Now(),
		EngineInfo: map[string]string{llamacpp.Name: llamacpp.SystemInfo()},
		Hardware:   func() *pb.Hardware { return hardware(backends) },
		Config:     publicConfig,
		IsRemote:   isRemote,
	}
	name := nodeName(cfg)

	n := &Node{cfg: cfg, id: nodeID, models: catalog, grpcLn: grpcLn, httpLn: httpLn, ollamaLn: ollamaLn, served: make(chan error, 3)}
	// Observation is outermost, so refused calls are counted and logged too; calls from peers
	// (over the mesh) are limited per peer, local clients are not.
	obs := newMetrics(catalog, func() *mesh { return n.mesh })
	keys := access.NewKeys(cfg.Server.APIKeys)
	peerLimits := rpc.NewPeerLimits(cfg.P2P.PeerMaxRequests, cfg.P2P.PeerRate)
	grpcOptions := append(grpcLimits(cfg.Server.Limits),
		grpc.ChainUnaryInterceptor(obs.unaryInterceptor, access.UnaryInterceptor(keys)),
		grpc.ChainStreamInterceptor(obs.streamInterceptor, access.StreamInterceptor(keys)))
	n.grpcServer = grpc.NewServer(append(grpcOptions, peerLimits.ServerOptions()...)...)
	pb.RegisterInferenceServiceServer(n.grpcServer, inference)
	pb.RegisterModelServiceServer(n.grpcServer, modelSvc)
	pb.RegisterNodeServiceServer(n.grpcServer, nodeSvc)
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.grpcServer, n.health)
	reflection.Register(n.grpcServer)
	for _, svc := range []string{"", pb.InferenceService_ServiceDesc.ServiceName, pb.ModelService_ServiceDesc.ServiceName, pb.NodeService_ServiceDesc.ServiceName} {
		n.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	httpHandler := httpapi.New(inference, modelSvc, nodeSvc)
	httpHandler.FetchImageURLs = cfg.Server.FetchImageURLs
	httpHandler.MaxRequestBody = cfg.Server.Limits.MaxRequestBody
	httpHandler.Native.MaxRequestBody = cfg.Server.Limits.MaxRequestBody
	httpHandler.Metrics = obs.handler()
	httpHandler.Native.Logs = logtail.Recent
	n.httpServer = httpapi.NewServer(obs.observeHTTP(dashboard.OpenShell(access.HTTP(keys, access.OpenAIErrors, httpHandler), httpHandler), httpHandler.Route), cfg.Server.Limits)
	n.httpServer.RegisterOnShutdown(httpHandler.StopEvents)
	if ollamaLn != nil {
		ollamaHandler := ollamaapi.New(inference, modelSvc, nodeSvc)
		ollamaHandler.MaxRequestBody = cfg.Server.Limits.MaxRequestBody
		n.ollamaServer = httpapi.NewServer(obs.observeHTTP(access.HTTP(keys, access.OllamaErrors, ollamaHandler), ollamaHandler.Route), cfg.Server.Limits)
	}

	n.mesh, err = startMesh(ctx, cfg, n.grpcServer, func() *pb.Capability { return selfCapability(catalog, name, hardware(backends)) })
	if err != nil {
		return nil, err
	}
	started = true
	inference.Router = &router.Router{Self: nodeID, MaxHops: cfg.Router.MaxHops, Local: localModel(catalog), LocalModels: localModels(catalog),
		OnForward: obs.forward}
	if n.mesh != nil {
		n.mesh.bans = router.NewBans(cfg.Router.BanAfter, cfg.Router.BanDuration)
		inference.Router.Bans = n.mesh.bans
		pl.SetMesh(n.mesh)
		n.mesh.serveBlobs(pl.BlobSource, cfg.P2P.PeerMaxTransfers)
		onChange = n.mesh.poke
		inference.Router.Peers = peerView{n.mesh}
		inference.Router.Dial = n.mesh.dial
		nodeSvc.Mesh = n.mesh
	}

	loadCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	catalog.Start(loadCtx)
	for _, d := range toPull {
		n.background.Add(1)
		go func() {
			defer n.background.Done()
			pl.PullDeclared(loadCtx, d)
		}()
	}
	go func() { n.served <- n.grpcServer.Serve(grpcLn) }()
	go func() { n.served <- n.httpServer.Serve(httpLn) }()
	if ollamaLn != nil {
		go func() { n.served <- n.ollamaServer.Serve(ollamaLn) }()
		slog.Info("serving Ollama's API", "addr", ollamaLn.Addr().String())
	}
	slog.Info("node serving", "peer_id", nodeID, "grpc", grpcLn.Addr().String(), "http", httpLn.Addr().String(),
		"dashboard", dashboardURL(httpLn.Addr(), serverTLS != nil), "models", len(catalog.List()), "data_dir", cfg.DataDir, "config", cfg.File, "api_keys", len(cfg.Server.APIKeys), "tls", serverTLS != nil)
	if len(catalog.List()) == 0 {
		slog.Warn("no model configured: add one to syn4pse.toml, e.g. [models.NAME] path = \"/path/to/model.gguf\" (see the README)")
	}
	return n, nil
}

func listen(what, addr, key, env string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s address %s is already in use: stop the other process or choose another port with %s (env %s)", what, addr, key, env)
		}
		return nil, fmt.Errorf("%s listen on %s: %w", what, addr, err)
	}
	return ln, nil
}

// GRPCAddr is the address the gRPC server listens on.
func (n *Node) GRPCAddr() string { return n.grpcLn.Addr().String() }

// HTTPAddr is the address the HTTP server listens on.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// OllamaAddr is the address Ollama's API listens on; "" where server.ollama_port is -1.
func (n *Node) OllamaAddr() string {
	if n.ollamaLn == nil {
		return ""
	}
	return n.ollamaLn.Addr().String()
}

// PeerID is the node's peer ID: its name on the mesh and in served_by.
func (n *Node) PeerID() string { return n.id }

// Done receives an error if a server stops on its own.
func (n *Node) Done() <-chan error { return n.served }

// Shutdown stops accepting requests, lets running ones finish until ctx ends (then cancels
// them), and frees the models.
func (n *Node) Shutdown(ctx context.Context) error {
	for _, svc := range []string{"", pb.InferenceService_ServiceDesc.ServiceName} {
		n.health.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	n.cancel()
	n.background.Wait()
	grpcDone := make(chan struct{})
	go func() { n.grpcServer.GracefulStop(); close(grpcDone) }()
	httpErr := shutdownHTTP(ctx, n.httpServer)
	if n.ollamaServer != nil {
		httpErr = errors.Join(httpErr, shutdownHTTP(ctx, n.ollamaServer))
	}
	select {
	case <-grpcDone:
	case <-ctx.Done():
		n.grpcServer.Stop()
		<-grpcDone
	}
	return errors.Join(httpErr, n.mesh.close(), n.models.Close())
}

// shutdownHTTP drains an HTTP server until ctx ends, then closes it.
func shutdownHTTP(ctx context.Context, s *http.Server) error {
	err := s.Shutdown(ctx)
	if err != nil {
		s.Close()
	}
	return err
}

// Run starts a node and serves until ctx is cancelled, then shuts down gracefully within the
// configured server.shutdown_timeout.
func Run(ctx context.Context, cfg *config.Config) error {
	n, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	var serveErr error
	select {
	case <-ctx.Done():
		slog.Info("shutting down: waiting for running requests", "timeout", cfg.Server.ShutdownTimeout)
	case serveErr = <-n.Done():
		slog.Error("server stopped", "err", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	slog.Info("node stopped")
	return serveErr
}

// totalMemory reads MemTotal from /proc/meminfo; 0 where that is not available.
func totalMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int64
	if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err != nil {
		return 0
	}
	return kb * 1024
}

// dashboardURL is where a browser on this machine finds the dashboard: the HTTP port, on
// loopback when the node listens on every address.
func dashboardURL(addr net.Addr, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host := addr.String()
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		host = net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
	}
	return scheme + "://" + host + "/"
}
