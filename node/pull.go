package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/p2p/blob"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/store"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// puller fills the store: from mesh peers that hold the model's blob first, then from its
// source (a URL or Hugging Face). A pulled model joins the catalog at once.
type puller struct {
	store   *store.Store
	catalog *models.Manager
	decls   map[string]config.Model // models declared in the config, by name
	mesh    *mesh                   // nil when standalone
}

// pull fetches the model req names and registers it; progress receives events as it goes.
func (p *puller) pull(ctx context.Context, req *pb.PullModelRequest, progress func(*pb.PullProgress)) (store.Manifest, error) {
	name := req.GetName()
	if name == "" {
		return store.Manifest{}, status.Error(codes.InvalidArgument, "name is empty: name the model to pull")
	}
	decl, declared := p.decls[name]
	source, sha := req.GetSource(), strings.TrimPrefix(req.GetSha256(), "sha256:")
	if source == "" && declared {
		source, sha = decl.Source, decl.SHA256
	}
	modality, engineName := "llm", engine.DefaultEngine
	if declared {
		modality, engineName = decl.Modality, decl.Engine
	}
	if e := req.GetEngine(); e != "" {
		engineName = e
	}
	if source != "" {
		if _, err := store.ResolveSource(source); err != nil {
			return store.Manifest{}, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	digest := ""
	if sha != "" {
		digest = "sha256:" + strings.ToLower(sha)
	}

	manifest, err := p.fromPeers(ctx, name, digest, source, modality, engineName, progress)
	if errors.Is(err, errNoPeer) {
		if source == "" {
			return store.Manifest{}, status.Errorf(codes.NotFound, "no peer of the mesh has %q and it has no source: give a source (an http(s) URL or hf://OWNER/REPO/FILE)", name)
		}
		manifest, err = p.store.Pull(ctx, store.PullRequest{Name: name, Source: source, SHA256: sha, Modality: modality, Engine: engineName},
			func(pr store.Progress) { progress(pullProgress(pr)) })
	}
	if err != nil {
		return store.Manifest{}, err
	}
	p.register(manifest)
	file, _ := manifest.Model()
	progress(&pb.PullProgress{Status: "done", CompletedBytes: file.Size, TotalBytes: file.Size, Digest: file.Digest, Done: true})
	return manifest, nil
}

var errNoPeer = errors.New("no peer has the model")

// fromPeers fetches the model's blob from the peers that announce it (or provide its digest
// in the DHT), best first, falling back to the next on any failure, including a blob whose
// digest does not verify.
func (p *puller) fromPeers(ctx context.Context, name, digest, source, modality, engineName string, progress func(*pb.PullProgress)) (store.Manifest, error) {
	if p.mesh == nil {
		return store.Manifest{}, errNoPeer
	}
	type offer struct {
		id     peer.ID
		digest string
		size   int64
	}
	var offers []offer
	for _, e := range p.mesh.announcer.Table().Peers() {
		for _, mc := range e.Capability.GetModels() {
			matches := digest != "" && mc.GetDigest() == digest || digest == "" && source == "" && mc.GetName() == name
			if matches && mc.GetDigest() != "" && mc.GetSizeBytes() > 0 {
				offers = append(offers, offer{e.ID, mc.GetDigest(), mc.GetSizeBytes()})
			}
		}
	}
	if digest != "" && len(offers) > 0 {
		// Providers outside the gossip mesh, found in the DHT, come after the announcing peers.
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		found, _ := p.mesh.host.Providers(dctx, digest, 8)
		cancel()
		for _, ai := range found {
			p.mesh.host.Libp2p().Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
			offers = append(offers, offer{ai.ID, digest, offers[0].size})
		}
	}
	if len(offers) == 0 {
		return store.Manifest{}, errNoPeer
	}
	if path, ok := p.store.BlobPath(offers[0].digest); ok {
		_ = path // already here: only the manifest is missing
		return p.writeManifest(name, modality, engineName, source, offers[0].digest, offers[0].size)
	}
	var errs []error
	for _, o := range offers {
		if o.id == p.mesh.host.ID() {
			continue
		}
		err := p.fetch(ctx, o.id, o.digest, o.size, progress)
		if err == nil {
			return p.writeManifest(name, modality, engineName, source, o.digest, o.size)
		}
		if ctx.Err() != nil {
			return store.Manifest{}, ctx.Err()
		}
		slog.Warn("pull from peer failed; trying the next", "model", name, "peer", o.id, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", o.id, err))
	}
	if source == "" {
		return store.Manifest{}, status.Errorf(codes.Unavailable, "every peer that has %q failed: %v", name, errors.Join(errs...))
	}
	return store.Manifest{}, errNoPeer // the source remains
}

// fetch copies one blob from a peer into the store, verified.
func (p *puller) fetch(ctx context.Context, id peer.ID, digest string, size int64, progress func(*pb.PullProgress)) error {
	partial, err := p.store.BlobWriter(digest, size)
	if err != nil {
		return err
	}
	from := "peer " + id.String()
	start, startOffset := time.Now(), partial.Offset()
	last := time.Time{}
	report := func(done int64) {
		if time.Since(last) < 250*time.Millisecond && done < size {
			return
		}
		last = time.Now()
		speed := float64(done-startOffset) / max(time.Since(start).Seconds(), 1e-9)
		progress(&pb.PullProgress{Status: "downloading", CompletedBytes: done, TotalBytes: size, BytesPerSecond: speed, Digest: digest, From: from})
	}
	if err := blob.Fetch(ctx, p.mesh.host.Libp2p(), id, digest, size, partial, report); err != nil {
		partial.Abort() // keep what arrived: the next try resumes
		return err
	}
	progress(&pb.PullProgress{Status: "verifying", CompletedBytes: size, TotalBytes: size, Digest: digest, From: from})
	if err := partial.Commit(); err != nil {
		partial.Discard()
		return err
	}
	return nil
}

func (p *puller) writeManifest(name, modality, engineName, source, digest string, size int64) (store.Manifest, error) {
	m := store.Manifest{Name: name, Modality: modality, Engine: engineName, Source: source, PulledAt: time.Now(),
		Files: []store.File{{Digest: digest, Size: size, Role: store.RoleModel}}}
	return m, p.store.PutManifest(m)
}

// register adds a pulled model to the catalog, with the engine options of its declaration
// when it has one.
func (p *puller) register(m store.Manifest) {
	file, ok := m.Model()
	if !ok {
		return
	}
	path, ok := p.store.BlobPath(file.Digest)
	if !ok {
		return
	}
	decl, declared := p.decls[m.Name]
	if !declared {
		decl = config.Model{Name: m.Name, Modality: m.Modality, Engine: m.Engine, Enabled: true, BatchSize: engine.DefaultBatchSize,
			GPULayers: -1, MainGPU: -1, Parallel: 1, FlashAttention: "auto", Declared: "pulled into the store"}
	}
	decl.Path = path
	if p.catalog.Register(decl) {
		p.catalog.SetDigest(m.Name, file.Digest)
	} else {
		slog.Warn("model pulled while its old copy is in use: the new file serves after an unload and another pull, or a restart", "model", m.Name)
	}
}

func pullProgress(pr store.Progress) *pb.PullProgress {
	return &pb.PullProgress{Status: pr.Status, CompletedBytes: pr.Completed, TotalBytes: pr.Total,
		BytesPerSecond: pr.BytesPerSecond, Digest: pr.Digest, From: pr.From}
}

// resolveDecls points declared models that have a source at their pulled file when the store
// has it, and returns those still to pull (no file at their path and none in the store).
func resolveDecls(decls []config.Model, st *store.Store) (resolved, toPull []config.Model) {
	for _, d := range decls {
		if d.Source != "" && (d.Path == "" || !fileExists(d.Path)) {
			if m, err := st.Manifest(d.Name); err == nil {
				if f, ok := m.Model(); ok {
					if path, ok := st.BlobPath(f.Digest); ok {
						d.Path = path
					}
				}
			}
			if d.Path == "" || !fileExists(d.Path) {
				toPull = append(toPull, d)
			}
		}
		resolved = append(resolved, d)
	}
	return resolved, toPull
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// registerStored adds the store's models that the config does not declare.
func registerStored(p *puller) {
	list, err := p.store.List()
	if err != nil {
		slog.Warn("model store", "err", err)
		return
	}
	for _, m := range list {
		if _, declared := p.decls[m.Name]; !declared {
			p.register(m)
		}
	}
}

// pullDeclared pulls a declared model whose file is missing, at start.
func (p *puller) pullDeclared(ctx context.Context, d config.Model) {
	slog.Info("pulling a declared model", "model", d.Name, "source", d.Source)
	last := time.Time{}
	_, err := p.pull(ctx, &pb.PullModelRequest{Name: d.Name}, func(pr *pb.PullProgress) {
		if time.Since(last) > 5*time.Second || pr.GetDone() {
			last = time.Now()
			slog.Info("pull", "model", d.Name, "status", pr.GetStatus(), "done", pr.GetCompletedBytes(), "total", pr.GetTotalBytes(), "from", pr.GetFrom())
		}
	})
	if err != nil && ctx.Err() == nil {
		slog.Error("pull failed", "model", d.Name, "source", d.Source, "err", err)
		p.catalog.MarkUnavailable(d.Name, fmt.Sprintf("pull from %s failed: %v", d.Source, err))
	}
}

// blobSource serves, to mesh peers, the verified blobs of the store and the files of declared
// models whose digest is known.
func (p *puller) blobSource(digest string) (string, bool) {
	if path, ok := p.store.BlobPath(digest); ok {
		return path, true
	}
	for _, s := range p.catalog.List() {
		if s.Digest == digest && s.State != models.StateUnavailable {
			return s.Path, true
		}
	}
	return "", false
}

// delete removes a pulled model: from the catalog (refused while loaded unless forced), then
// its manifest and the blobs no other model uses.
func (p *puller) delete(name string, force bool) (int64, error) {
	if d, declared := p.decls[name]; declared && d.Source == "" {
		return 0, status.Errorf(codes.FailedPrecondition, "%q is declared in %s with a path: remove it there", name, d.Declared)
	}
	if _, err := p.store.Manifest(name); err != nil {
		return 0, fmt.Errorf("%w: %q is not in this node's store", models.ErrNotFound, name)
	}
	if _, err := p.catalog.Remove(name, force); err != nil && !errors.Is(err, models.ErrNotFound) {
		return 0, err
	}
	return p.store.Delete(name)
}
