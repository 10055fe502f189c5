package p2p

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// DigestCID is the content ID of a blob with the given digest ("sha256:<hex>"): CIDv1, raw
// codec, the sha2-256 multihash. Nodes provide it in the DHT for every model file they hold,
// so a node can find who has a model even outside its gossip mesh.
func DigestCID(digest string) (cid.Cid, error) {
	hexDigest, ok := strings.CutPrefix(digest, "sha256:")
	if !ok {
		return cid.Undef, fmt.Errorf("digest %q: want sha256:<hex>", digest)
	}
	sum, err := hex.DecodeString(hexDigest)
	if err != nil || len(sum) != 32 {
		return cid.Undef, fmt.Errorf("digest %q: want sha256: followed by 64 hex digits", digest)
	}
	mh, err := multihash.Encode(sum, multihash.SHA2_256)
	if err != nil {
		return cid.Undef, err
	}
	return cid.NewCidV1(cid.Raw, mh), nil
}

// Provide announces in the DHT that this node holds the blob with digest.
func (h *Host) Provide(ctx context.Context, digest string) error {
	c, err := DigestCID(digest)
	if err != nil {
		return err
	}
	return h.dht.Provide(ctx, c, true)
}

// Providers finds up to limit peers that provide the blob with digest, this node excluded.
func (h *Host) Providers(ctx context.Context, digest string, limit int) ([]peer.AddrInfo, error) {
	c, err := DigestCID(digest)
	if err != nil {
		return nil, err
	}
	var out []peer.AddrInfo
	for ai := range h.dht.FindProvidersAsync(ctx, c, limit+1) {
		if ai.ID != h.ID() && len(out) < limit {
			out = append(out, ai)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, ctx.Err()
}
