// Package access guards a node's API ports with API keys: an HTTP middleware for the OpenAI,
// native and Ollama ports, and gRPC interceptors for the TCP gRPC port.
//
// Invariants:
//   - A request passes only with "Bearer KEY" (HTTP header Authorization, gRPC metadata
//     authorization) where KEY is one of the configured keys. The check takes the same time
//     whichever key matches and however much of a wrong key is right: it compares SHA-256
//     digests, which have one length, with crypto/subtle against every key, without stopping
//     at a match.
//   - Open without a key: HTTP /healthz, and gRPC's standard health service
//     (grpc.health.v1.Health), so container and load-balancer probes need no secret; both say
//     only whether the node serves.
//   - Calls from mesh peers over libp2p (p2p/rpc) need no key: the swarm key and the peer's
//     libp2p identity admitted them already. rpc.PeerFromContext tells them apart, and a TCP
//     client cannot pass for one (the peer address type is p2p/rpc's own).
//   - Keys never reach a log or an error message: a refusal says only that the key is missing
//     or wrong.
package access

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// Keys is a set of API keys. The zero value and a Keys made from no keys require nothing.
type Keys struct {
	digests [][sha256.Size]byte
}

// NewKeys returns the set of keys; empty strings are ignored.
func NewKeys(keys []string) *Keys {
	k := &Keys{}
	for _, key := range keys {
		if key != "" {
			k.digests = append(k.digests, sha256.Sum256([]byte(key)))
		}
	}
	return k
}

// Required says whether requests need a key at all.
func (k *Keys) Required() bool { return k != nil && len(k.digests) > 0 }

// Valid says whether key is one of the set, in time independent of which one matches and of
// how close a wrong key comes.
func (k *Keys) Valid(key string) bool {
	if !k.Required() {
		return true
	}
	got := sha256.Sum256([]byte(key))
	match := 0
	for _, want := range k.digests {
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	// An empty key never matches (NewKeys drops empty keys), but its digest is compared all the
	// same so that a missing key takes as long as a wrong one.
	return match == 1 && key != ""
}

// bearer returns the token of an "Authorization: Bearer TOKEN" value; ok is false for any
// other scheme or an empty token. The scheme is case-insensitive (RFC 9110).
func bearer(header string) (token string, ok bool) {
	scheme, token, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// refusal says why a request was refused, naming the fix; it never includes the key sent.
func refusal(header string) string {
	if strings.TrimSpace(header) == "" {
		return "missing API key: this node requires one; send it as \"Authorization: Bearer KEY\" " +
			"(OpenAI SDKs: api_key / apiKey; syn4pse CLI: --api-key or SYN4PSE_API_KEY)"
	}
	if _, ok := bearer(header); !ok {
		return "malformed Authorization header: send \"Authorization: Bearer KEY\""
	}
	return "invalid API key: it is not one of this node's server.api_keys"
}
