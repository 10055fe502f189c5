// Package pull fills the model store and the catalog: a model comes from mesh peers that hold
// its blob first (announcing peers, then DHT providers of its digest; each blob verified by
// sha256, the next provider tried on any failure), else from its source (an http(s) URL or
// Hugging Face). A pulled model joins the catalog at once. The mesh is reached through one
// narrow interface, Mesh; errors callers branch on are the sentinels below.
package pull

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/store"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Errors a pull or a delete reports; each wraps the message that says what to do.
var (
	// ErrInvalid is a request that cannot be pulled as asked (no name, a bad source).
	ErrInvalid = errors.New("invalid pull request")
	// ErrNoSource is a model no peer has and that has no source to download it from.
	ErrNoSource = errors.New("no peer has the model and it has no source")
	// ErrPeersFailed is a model every peer that has it failed to send, with no source left.
	ErrPeersFailed = errors.New("every peer that has the model failed")
	// ErrDeclaredPath is a delete of a model the config declares by path.
	ErrDeclaredPath = errors.New("model declared with a path")
)

// kindError is a message of its own that still matches its sentinel with errors.Is.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Offer is a peer that holds a model's blob.
type Offer struct {
	Peer   peer.ID
	Digest string
	Size   int64
	// Modality ("llm", "embeddings"...) and Engine are what the peer announces the model as,
	// when it does: a model this node does not declare is registered as its peer serves it.
	Modality string
	Engine   string
}

// Sink receives a blob: the store's partial file, resumable at Offset.
type Sink interface {
	Offset() int64
	Write(p []byte) (int, error)
}

// Mesh is what pulling needs of the mesh.
type Mesh interface {
	// Offers lists the peers that hold the blob digest, or, when digest is "", the model
	// announced as name: announcing peers first, then DHT providers of the digest.
	Offers(ctx context.Context, name, digest string) []Offer
	// Fetch copies the blob digest (size bytes) from peer into sink, resuming at what sink
	// holds; progress receives the bytes held so far.
	Fetch(ctx context.Context, from peer.ID, digest string, size int64, sink Sink, progress func(done int64)) error
	// Report tells how a transfer from peer ended, once per Fetch: nil when the blob arrived
	// and verified, else the error of the transfer or of the verification (a blob whose digest
	// does not match), so that a peer that keeps failing can be left out.
	Report(from peer.ID, err error)
	// Self is this node's peer ID.
	Self() peer.ID
}

// Puller fills the store: from mesh peers that hold the model's blob first, then from its
// source (a URL or Hugging Face). A pulled model joins the catalog at once.
type Puller struct {
	store   *store.Store
	catalog *models.Manager
	decls   map[string]config.Model // models declared in the config, by name
	mesh    Mesh                    // nil when standalone
}

// New is a Puller over the store and the catalog, for the models decls declares.
func New(st *store.Store, catalog *models.Manager, decls []config.Model) *Puller {
	p := &Puller{store: st, catalog: catalog, decls: make(map[string]config.Model, len(decls))}
	for _, d := range decls {
		p.decls[d.Name] = d
	}
	return p
}

// SetMesh lets pulls ask the mesh first; until then (or on a standalone node) they download
// from the source.
func (p *Puller) SetMesh(m Mesh) { p.mesh = m }

// Pull fetches the model req names and registers it; progress receives events as it goes.
func (p *Puller) Pull(ctx context.Context, req *pb.PullModelRequest, progress func(*pb.PullProgress)) (store.Manifest, error) {
	name := req.GetName()
	if name == "" {
		return store.Manifest{}, errorf(ErrInvalid, "name is empty: name the model to pull")
	}
	decl, declared := p.decls[name]
	source, sha := req.GetSource(), strings.TrimPrefix(req.GetSha256(), "sha256:")
	if source == "" && declared {
		source, sha = decl.Source, decl.SHA256
	}
	kind := modelKind{modality: "llm", engine: engine.DefaultEngine, fromOffer: !declared && req.GetEngine() == ""}
	if declared {
		kind.modality, kind.engine = decl.Modality, decl.Engine
	}
	if e := req.GetEngine(); e != "" {
		kind.engine = e
	}
	if source != "" {
		if _, err := store.ResolveSource(source); err != nil {
			return store.Manifest{}, errorf(ErrInvalid, "%v", err)
		}
	}
	digest := ""
	if sha != "" {
		digest = "sha256:" + strings.ToLower(sha)
	}

	manifest, err := p.fromPeers(ctx, name, digest, source, kind, progress)
	if errors.Is(err, errNoPeer) {
		if source == "" {
			return store.Manifest{}, errorf(ErrNoSource, "no peer of the mesh has %q and it has no source: give a source (an http(s) URL or hf://OWNER/REPO/FILE)", name)
		}
		manifest, err = p.store.Pull(ctx, store.PullRequest{Name: name, Source: source, SHA256: sha, Modality: kind.modality, Engine: kind.engine},
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

// modelKind is what a pulled model is registered as. fromOffer: the model is not declared
// here and the request names no engine, so a peer's announcement says what it is.
type modelKind struct {
	modality, engine string
	fromOffer        bool
}

// of is the kind to register a model fetched on offer o as.
func (k modelKind) of(o Offer) modelKind {
	if k.fromOffer && o.Modality != "" && o.Engine != "" {
		k.modality, k.engine = o.Modality, o.Engine
	}
	return k
}

// fromPeers fetches the model's blob from the peers that announce it (or provide its digest
// in the DHT), best first, falling back to the next on any failure, including a blob whose
// digest does not verify.
func (p *Puller) fromPeers(ctx context.Context, name, digest, source string, kind modelKind, progress func(*pb.PullProgress)) (store.Manifest, error) {
	if p.mesh == nil {
		return store.Manifest{}, errNoPeer
	}
	var offers []Offer
	if digest != "" || source == "" {
		// By name only when no source is given: a source names its own file.
		offers = p.mesh.Offers(ctx, name, digest)
	}
	if len(offers) == 0 {
		return store.Manifest{}, errNoPeer
	}
	if _, ok := p.store.BlobPath(offers[0].Digest); ok {
		// already here: only the manifest is missing
		return p.writeManifest(name, kind.of(offers[0]), source, offers[0].Digest, offers[0].Size)
	}
	var errs []error
	for _, o := range offers {
		if o.Peer == p.mesh.Self() {
			continue
		}
		err := p.fetch(ctx, o.Peer, o.Digest, o.Size, progress)
		if err == nil {
			return p.writeManifest(name, kind.of(o), source, o.Digest, o.Size)
		}
		if ctx.Err() != nil {
			return store.Manifest{}, ctx.Err()
		}
		slog.Warn("pull from peer failed; trying the next", "model", name, "peer", o.Peer, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", o.Peer, err))
	}
	if source == "" {
		return store.Manifest{}, errorf(ErrPeersFailed, "every peer that has %q failed: %v", name, errors.Join(errs...))
	}
	return store.Manifest{}, errNoPeer // the source remains
}

// fetch copies one blob from a peer into the store, verified.
func (p *Puller) fetch(ctx context.Context, id peer.ID, digest string, size int64, progress func(*pb.PullProgress)) error {
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
	if err := p.mesh.Fetch(ctx, id, digest, size, partial, report); err != nil {
		partial.Abort() // keep what arrived: the next try resumes
		p.mesh.Report(id, err)
		return err
	}
	progress(&pb.PullProgress{Status: "verifying", CompletedBytes: size, TotalBytes: size, Digest: digest, From: from})
	if err := partial.Commit(); err != nil {
		partial.Discard()
		if errors.Is(err, store.ErrDigestMismatch) {
			p.mesh.Report(id, err) // the peer sent another blob; a failing disk here is not its fault
		}
		return err
	}
	p.mesh.Report(id, nil)
	return nil
}

func (p *Puller) writeManifest(name string, kind modelKind, source, digest string, size int64) (store.Manifest, error) {
	m := store.Manifest{Name: name, Modality: kind.modality, Engine: kind.engine, Source: source, PulledAt: time.Now(),
		Files: []store.File{{Digest: digest, Size: size, Role: store.RoleModel}}}
	return m, p.store.PutManifest(m)
}

// register adds a pulled model to the catalog, with the engine options of its declaration
// when it has one.
func (p *Puller) register(m store.Manifest) {
	file, ok := m.Model()
	if !ok {
		return
	}
	path, ok := p.store.BlobPath(file.Digest)
	if !ok {
		return
	}
	decl := models.Decl{Name: m.Name, Modality: m.Modality, Engine: m.Engine, Enabled: true, Declared: "pulled into the store",
		Options: engine.LoadOptions{BatchSize: engine.DefaultBatchSize, GPULayers: -1, MainGPU: -1, FlashAttention: "auto"}} // Parallel 0: auto
	if declared, ok := p.decls[m.Name]; ok {
		decl = declared.Decl()
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

// ResolveDecls points declared models that have a source at their pulled file when the store
// has it, and returns those still to pull (no file at their path and none in the store).
func ResolveDecls(decls []config.Model, st *store.Store) (resolved, toPull []config.Model) {
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

// RegisterStored adds the store's models that the config does not declare to the catalog.
func (p *Puller) RegisterStored() {
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

// PullDeclared pulls a declared model whose file is missing, at start, and marks it
// unavailable with the reason when that fails.
func (p *Puller) PullDeclared(ctx context.Context, d config.Model) {
	slog.Info("pulling a declared model", "model", d.Name, "source", d.Source)
	last := time.Time{}
	_, err := p.Pull(ctx, &pb.PullModelRequest{Name: d.Name}, func(pr *pb.PullProgress) {
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

// BlobSource serves, to mesh peers, the verified blobs of the store and the files of declared
// models whose digest is known.
func (p *Puller) BlobSource(digest string) (string, bool) {
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

// Delete removes a pulled model: from the catalog (refused while loaded unless forced), then
// its manifest and the blobs no other model uses.
func (p *Puller) Delete(name string, force bool) (int64, error) {
	if d, declared := p.decls[name]; declared && d.Source == "" {
		return 0, errorf(ErrDeclaredPath, "%q is declared in %s with a path: remove it there", name, d.Declared)
	}
	if _, err := p.store.Manifest(name); err != nil {
		return 0, fmt.Errorf("%w: %q is not in this node's store", models.ErrNotFound, name)
	}
	if _, err := p.catalog.Remove(name, force); err != nil && !errors.Is(err, models.ErrNotFound) {
		return 0, err
	}
	return p.store.Delete(name)
}
