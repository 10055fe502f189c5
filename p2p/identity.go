package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// IdentityFile is the name of the node's private key in the data directory.
const IdentityFile = "identity.key"

// LoadOrCreateIdentity returns the node's Ed25519 key from <dataDir>/identity.key, creating it
// (mode 0600, written atomically) on first run. The peer ID derived from it is the node's name
// on the mesh, so a file that exists but does not hold a valid key is an error naming the path:
// replacing it silently would give the node a new identity that allowlists do not know.
func LoadOrCreateIdentity(dataDir string) (crypto.PrivKey, error) {
	path := filepath.Join(dataDir, IdentityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseIdentity(path, b)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read identity: %w", err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode identity: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := durable.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write identity: %w", err)
	}
	slog.Info("created node identity", "path", path)
	return key, nil
}

func parseIdentity(path string, b []byte) (crypto.PrivKey, error) {
	key, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("identity %s is corrupt (%v): restore it from a backup, or delete it to give this node a new peer ID", path, err)
	}
	if key.Type() != cryptopb.KeyType_Ed25519 {
		return nil, fmt.Errorf("identity %s holds a %s key, want Ed25519", path, key.Type())
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		slog.Warn("identity key is readable by other users; chmod 600 it", "path", path, "mode", info.Mode().Perm())
	}
	return key, nil
}
