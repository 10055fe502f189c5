package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// digestCache remembers the sha256 of model files by path, size and modification time, in
// <data dir>/digests.json, so each file is read whole once, not at every start.
type digestCache struct {
	path   string
	mu     sync.Mutex
	byFile map[string]cachedDigest
}

type cachedDigest struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
	Digest  string    `json:"digest"`
}

func openDigestCache(dataDir string) *digestCache {
	c := &digestCache{byFile: map[string]cachedDigest{}}
	if dataDir == "" {
		return c
	}
	c.path = filepath.Join(dataDir, "digests.json")
	if b, err := os.ReadFile(c.path); err == nil {
		json.Unmarshal(b, &c.byFile) // a damaged cache only costs a re-hash
	}
	return c
}

// digest returns "sha256:<hex>" of the file at path.
func (c *digestCache) digest(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	cached, ok := c.byFile[path]
	c.mu.Unlock()
	if ok && cached.Size == fi.Size() && cached.ModTime.Equal(fi.ModTime()) {
		return cached.Digest, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	d := "sha256:" + hex.EncodeToString(h.Sum(nil))
	c.mu.Lock()
	c.byFile[path] = cachedDigest{Size: fi.Size(), ModTime: fi.ModTime(), Digest: d}
	err = c.save()
	c.mu.Unlock()
	return d, err
}

// save writes the cache through a temp file, fsync and rename; the caller holds mu.
func (c *digestCache) save() error {
	if c.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(c.byFile, "", "  ")
	if err != nil {
		return err
	}
	err = durable.WriteFile(c.path, b, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no data dir yet: the digest is still right, just not remembered
	}
	return err
}
