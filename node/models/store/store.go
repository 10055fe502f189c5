// Package store is the node's content-addressed model store: model files kept once each under
// the sha256 of their bytes, a manifest per model naming its files, and the puller that fills
// the store over HTTP with resume, digest verification and progress.
//
// Layout under the root directory (the node passes <data_dir>/models):
//
//	blobs/sha256-<hex>      the files; one appears here only after its digest verified
//	manifests/<name>.json   one per model: name, modality, engine, files, source, pulled_at
//	partial/<key>           downloads in progress, kept across restarts to resume them
//
// Every change is a temp file, fsync, rename and fsync of the directory, so a crash at any
// point leaves the old state or the new one, never half a model. A Store is safe for
// concurrent use by one process; two processes must not share a root.
package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound means no model of that name is in the store, or a source URL does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch means the bytes do not hash to the expected sha256.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrNotGGUF means a model that must be a GGUF file (llm, embedding) is not one.
	ErrNotGGUF = errors.New("not a GGUF file")
	// ErrAccessDenied means the source refused the download (HTTP 401 or 403).
	ErrAccessDenied = errors.New("access denied")
	// ErrBusy means another writer holds the partial file of that blob.
	ErrBusy = errors.New("blob is being written")
)

// RoleModel is the role of a manifest's main model file.
const RoleModel = "model"

const (
	blobsDir     = "blobs"
	manifestsDir = "manifests"
	partialDir   = "partial"
	// tempPrefix starts the name of every temp file; Open removes them.
	tempPrefix = durable.TempPrefix
)

// modelNameRE is the rule for model names everywhere (the config checks names with
// ValidModelName); it also keeps names safe as file names.
var modelNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// ValidModelName reports whether name is a valid model name: letters, digits and . _ : -, at
// most 128, starting with a letter or a digit.
func ValidModelName(name string) bool { return modelNameRE.MatchString(name) }

// Manifest describes one model in the store.
type Manifest struct {
	Name     string    `json:"name"`
	Modality string    `json:"modality"`
	Engine   string    `json:"engine"`
	Files    []File    `json:"files"`
	Source   string    `json:"source,omitempty"`
	PulledAt time.Time `json:"pulled_at"`
}

// File is one blob of a model.
type File struct {
	Digest string `json:"digest"` // "sha256:<hex>"
	Size   int64  `json:"size"`
	Role   string `json:"role"` // RoleModel
}

// Model returns the manifest's main model file.
func (m Manifest) Model() (File, bool) {
	for _, f := range m.Files {
		if f.Role == RoleModel {
			return f, true
		}
	}
	return File{}, false
}

// Store is a model store rooted at one directory.
type Store struct {
	root   string
	client *http.Client
	retry  retryPolicy

	// mu serializes what changes which blobs a manifest may rely on: manifest writes, moves
	// into blobs/ that a manifest follows, and deletions.
	mu sync.Mutex

	keysMu sync.Mutex
	busy   map[string]chan struct{} // partial keys being written; closed when released
}

// Open opens the store at root, creating its directories. It removes temp files a crash left
// behind and keeps partial downloads, which the next pull of the same file resumes.
func Open(root string) (*Store, error) {
	for _, dir := range []string{root, filepath.Join(root, blobsDir), filepath.Join(root, manifestsDir), filepath.Join(root, partialDir)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("open model store: %w", err)
		}
		if err := removeTemps(dir); err != nil {
			return nil, fmt.Errorf("open model store: %w", err)
		}
	}
	if err := removeOrphanSidecars(filepath.Join(root, partialDir)); err != nil {
		return nil, fmt.Errorf("open model store: %w", err)
	}
	return &Store{root: root, client: newHTTPClient(), retry: defaultRetry, busy: map[string]chan struct{}{}}, nil
}

// removeTemps removes the temp files in dir, left by a write that never reached its rename.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) && !e.IsDir() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			slog.Debug("model store: removed stale temp file", "path", filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// removeOrphanSidecars removes the download notes of partial files that no longer exist.
func removeOrphanSidecars(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		data, ok := strings.CutSuffix(e.Name(), sidecarSuffix)
		if !ok {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, data)); errors.Is(err, fs.ErrNotExist) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// Manifest returns the manifest of the named model; the error wraps ErrNotFound when there is
// none.
func (s *Store) Manifest(name string) (Manifest, error) {
	if err := checkName(name); err != nil {
		return Manifest{}, err
	}
	b, err := os.ReadFile(s.manifestPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("model %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("model %q: %w", name, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("model %q: damaged manifest %s: %w", name, s.manifestPath(name), err)
	}
	return m, nil
}

// List returns the manifests of the store sorted by name. A damaged manifest is logged and
// left out rather than hiding the others.
func (s *Store) List() ([]Manifest, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, manifestsDir))
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	var out []Manifest
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || strings.HasPrefix(e.Name(), ".") || checkName(name) != nil {
			continue
		}
		m, err := s.Manifest(name)
		if err != nil {
			slog.Warn("model store: skipping manifest", "path", filepath.Join(s.root, manifestsDir, e.Name()), "err", err)
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// BlobPath returns the path of the verified blob with that digest ("sha256:<hex>"), and
// whether the store has it.
func (s *Store) BlobPath(digest string) (string, bool) {
	sum, err := parseDigest(digest)
	if err != nil {
		return "", false
	}
	_, ok := s.blobFile(sum)
	return s.blobPath(sum), ok
}

// HasBlob reports whether the store has the verified blob with that digest.
func (s *Store) HasBlob(digest string) bool {
	_, ok := s.BlobPath(digest)
	return ok
}

// PutManifest writes m atomically, replacing any manifest of that name; every file it names
// must already be in blobs/ with its size. Blobs that only the replaced manifest used are
// removed.
func (s *Store) PutManifest(m Manifest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.putManifestLocked(m); err != nil {
		return fmt.Errorf("put manifest %q: %w", m.Name, err)
	}
	return nil
}

// putManifestLocked is PutManifest with s.mu held; it returns the bytes freed.
func (s *Store) putManifestLocked(m Manifest) (int64, error) {
	if err := checkName(m.Name); err != nil {
		return 0, err
	}
	if len(m.Files) == 0 {
		return 0, errors.New("a manifest needs at least one file")
	}
	m.Files = slices.Clone(m.Files)
	for i, f := range m.Files {
		sum, err := parseDigest(f.Digest)
		if err != nil {
			return 0, err
		}
		m.Files[i].Digest = "sha256:" + sum
		got, ok := s.blobFile(sum)
		if !ok {
			return 0, fmt.Errorf("blob %s: %w in the store", f.Digest, ErrNotFound)
		}
		if got.Size != f.Size {
			return 0, fmt.Errorf("blob %s has %d bytes, the manifest says %d", f.Digest, got.Size, f.Size)
		}
	}
	old, oldErr := s.Manifest(m.Name)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return 0, err
	}
	if err := durable.WriteFile(s.manifestPath(m.Name), b, 0o600); err != nil {
		return 0, err
	}
	if oldErr != nil {
		return 0, nil
	}
	return s.removeUnusedLocked(old.Files)
}

// Delete removes the named model's manifest and the blobs no other manifest uses, and
// returns the bytes freed. The error wraps ErrNotFound when there is no such model.
func (s *Store) Delete(name string) (freed int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.Manifest(name)
	if err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	// The manifest goes first: a crash before the blobs go leaves unused blobs (Prune takes
	// them), never a manifest without its blobs.
	if err := os.Remove(s.manifestPath(name)); err != nil {
		return 0, fmt.Errorf("delete %q: %w", name, err)
	}
	if err := durable.SyncDir(filepath.Join(s.root, manifestsDir)); err != nil {
		return 0, fmt.Errorf("delete %q: %w", name, err)
	}
	freed, err = s.removeUnusedLocked(m.Files)
	if err != nil {
		return freed, fmt.Errorf("delete %q: %w", name, err)
	}
	return freed, nil
}

// Prune removes the blobs no manifest uses (left by a crash inside Delete, or committed by a
// transfer whose manifest never came) and returns the bytes freed. Call it when no transfer is
// in flight, at start for instance: a blob just committed for a manifest still to be written
// would go too.
func (s *Store) Prune() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(filepath.Join(s.root, blobsDir))
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	var all []File
	for _, e := range entries {
		if sum, ok := strings.CutPrefix(e.Name(), "sha256-"); ok && isHexDigest(sum) {
			all = append(all, File{Digest: "sha256:" + sum})
		}
	}
	freed, err := s.removeUnusedLocked(all)
	if err != nil {
		return freed, fmt.Errorf("prune: %w", err)
	}
	return freed, nil
}

// removeUnusedLocked removes those of files whose blob no manifest names; s.mu is held.
func (s *Store) removeUnusedLocked(files []File) (int64, error) {
	manifests, err := s.List()
	if err != nil {
		return 0, err
	}
	used := map[string]bool{}
	for _, m := range manifests {
		for _, f := range m.Files {
			if sum, err := parseDigest(f.Digest); err == nil {
				used[sum] = true
			}
		}
	}
	var freed int64
	for _, f := range files {
		sum, err := parseDigest(f.Digest)
		if err != nil || used[sum] {
			continue
		}
		got, ok := s.blobFile(sum)
		if !ok {
			continue
		}
		if err := os.Remove(s.blobPath(sum)); err != nil {
			return freed, err
		}
		used[sum] = true // a digest listed twice is freed once
		freed += got.Size
	}
	return freed, durable.SyncDir(filepath.Join(s.root, blobsDir))
}

// DiskUsage returns the bytes the store's files take: blobs, manifests and partial downloads.
func (s *Store) DiskUsage() (int64, error) {
	var total int64
	err := filepath.WalkDir(s.root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("disk usage: %w", err)
	}
	return total, nil
}

func (s *Store) manifestPath(name string) string {
	return filepath.Join(s.root, manifestsDir, name+".json")
}

func (s *Store) blobPath(sum string) string {
	return filepath.Join(s.root, blobsDir, blobName(sum))
}

// blobFile returns the stored blob of hex digest sum, if present.
func (s *Store) blobFile(sum string) (File, bool) {
	info, err := os.Stat(s.blobPath(sum))
	if err != nil || !info.Mode().IsRegular() {
		return File{}, false
	}
	return File{Digest: "sha256:" + sum, Size: info.Size(), Role: RoleModel}, true
}

func blobName(sum string) string { return "sha256-" + sum }

func checkName(name string) error {
	if !modelNameRE.MatchString(name) {
		return fmt.Errorf("invalid model name %q: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit", name)
	}
	return nil
}

// parseDigest accepts "sha256:<hex>", "sha256-<hex>" or a bare hex sha256 and returns the
// lowercase hex.
func parseDigest(d string) (string, error) {
	sum := strings.ToLower(d)
	if rest, ok := strings.CutPrefix(sum, "sha256:"); ok {
		sum = rest
	} else if rest, ok := strings.CutPrefix(sum, "sha256-"); ok {
		sum = rest
	}
	if !isHexDigest(sum) {
		return "", fmt.Errorf("invalid digest %q: want sha256:<64 hex digits>", d)
	}
	return sum, nil
}

// isHexDigest reports whether s is 64 lowercase hex digits, the text of a sha256.
func isHexDigest(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}
