package p2p

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// SwarmKey is the pre-shared key of a private mesh: only hosts holding the same key can
// complete a connection (libp2p private networks). Only TCP (and WebSocket) connections can be
// wrapped with it; QUIC, WebTransport and WebRTC bring their own encryption and refuse a PSK.
type SwarmKey [32]byte

const (
	swarmKeyHeader = "/key/swarm/psk/1.0.0/"
	swarmKeyBase16 = "/base16/"
	swarmKeyBase64 = "/base64/"
	swarmKeyBin    = "/bin/"
)

// GenerateSwarmKey returns a new random key, the start of a new mesh.
func GenerateSwarmKey() (SwarmKey, error) {
	var k SwarmKey
	if _, err := rand.Read(k[:]); err != nil {
		return SwarmKey{}, fmt.Errorf("generate swarm key: %w", err)
	}
	return k, nil
}

// ParseSwarmKey reads a key in the libp2p swarm key format, as written by kubo and
// ipfs-swarm-key-gen: the line "/key/swarm/psk/1.0.0/", an encoding line ("/base16/",
// "/base64/" or "/bin/") and the 32 key bytes in that encoding. Trailing whitespace and CRLF line
// ends are accepted.
func ParseSwarmKey(b []byte) (SwarmKey, error) {
	var k SwarmKey
	header, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok || string(bytes.TrimRight(header, "\r")) != swarmKeyHeader {
		return k, fmt.Errorf("swarm key: want first line %q", swarmKeyHeader)
	}
	encoding, body, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return k, errors.New("swarm key: missing encoding line")
	}
	var key []byte
	var err error
	switch string(bytes.TrimRight(encoding, "\r")) {
	case swarmKeyBase16:
		key, err = hex.DecodeString(string(bytes.TrimSpace(body)))
	case swarmKeyBase64:
		key, err = base64.StdEncoding.DecodeString(string(bytes.TrimSpace(body)))
	case swarmKeyBin:
		// Raw bytes may contain newlines themselves: take 32 and allow only whitespace after.
		key = body
		if len(body) > len(k) && len(bytes.TrimSpace(body[len(k):])) == 0 {
			key = body[:len(k)]
		}
	default:
		return k, fmt.Errorf("swarm key: unknown encoding %q (want %s, %s or %s)", bytes.TrimSpace(encoding), swarmKeyBase16, swarmKeyBase64, swarmKeyBin)
	}
	if err != nil {
		return k, fmt.Errorf("swarm key: %w", err)
	}
	if len(key) != len(k) {
		return k, fmt.Errorf("swarm key: %d bytes, want %d", len(key), len(k))
	}
	copy(k[:], key)
	return k, nil
}

// MarshalText encodes the key in the libp2p format with base16, the form of a swarm.key file.
// The result is the secret itself.
func (k SwarmKey) MarshalText() ([]byte, error) {
	return []byte(k.String()), nil
}

// UnmarshalText decodes a key written by MarshalText or any libp2p swarm key file.
func (k *SwarmKey) UnmarshalText(b []byte) error {
	parsed, err := ParseSwarmKey(b)
	if err != nil {
		return err
	}
	*k = parsed
	return nil
}

// String returns the key in the libp2p format with base16: the secret. Show Fingerprint to
// people instead; structured logs get the fingerprint through LogValue.
func (k SwarmKey) String() string {
	return swarmKeyHeader + "\n" + swarmKeyBase16 + "\n" + hex.EncodeToString(k[:])
}

// Fingerprint names the mesh without revealing its key: the first 8 hex digits of the key's
// SHA-256. Two nodes with the same fingerprint are (almost certainly) in the same mesh.
func (k SwarmKey) Fingerprint() string {
	sum := sha256.Sum256(k[:])
	return hex.EncodeToString(sum[:4])
}

// LogValue keeps the secret out of structured logs: slog records the fingerprint.
func (k SwarmKey) LogValue() slog.Value {
	return slog.StringValue("swarm:" + k.Fingerprint())
}

// LoadSwarmKey reads the key file at path. An error satisfying errors.Is(err, fs.ErrNotExist)
// means there is none: the node runs standalone.
func LoadSwarmKey(path string) (SwarmKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SwarmKey{}, err
	}
	k, err := ParseSwarmKey(b)
	if err != nil {
		return SwarmKey{}, fmt.Errorf("%s: %w", path, err)
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		slog.Warn("swarm key is readable by other users; chmod 600 it", "path", path, "mode", info.Mode().Perm())
	}
	return k, nil
}

// SaveSwarmKey writes k to path with mode 0600, atomically: a crash leaves the old key or the
// new one.
func SaveSwarmKey(path string, k SwarmKey) error {
	if err := durable.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("save swarm key: %w", err)
	}
	return nil
}
