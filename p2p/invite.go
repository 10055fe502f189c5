package p2p

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// Invite is what a node needs to join a mesh: its key and where to find a member.
type Invite struct {
	// Key is the mesh's swarm key.
	Key SwarmKey
	// Addrs are members' addresses, each ending in /p2p/<peer ID>.
	Addrs []multiaddr.Multiaddr
	// Expires is when the invite stops being accepted, with second precision; zero never.
	Expires time.Time
}

// InvitePrefix starts every invite token; the 1 is the token format, not the mesh.
const InvitePrefix = "syn4pse1-"

// inviteVersion is the version byte of the payload inside the token.
const inviteVersion = 1

// Errors of DecodeInvite, wrapped with details; callers branch on them with errors.Is.
var (
	ErrInviteMalformed = errors.New("malformed invite")
	ErrInviteVersion   = errors.New("unsupported invite version")
	ErrInviteExpired   = errors.New("invite expired")
	ErrInviteNoAddrs   = errors.New("invite has no addresses")
)

const (
	inviteChecksumSize = 4
	// inviteMaxAddrs and inviteMaxAddrSize bound what a pasted token can make us allocate.
	inviteMaxAddrs    = 64
	inviteMaxAddrSize = 1024
)

// Encode returns the invite as one copy-pasteable token without spaces: InvitePrefix, then the
// base64url (no padding) of a version byte, the key, the expiry (Unix seconds, varint; 0 never),
// the address count and each address's binary multiaddr (length-prefixed), and a 4-byte
// SHA-256 checksum that catches a token cut short when copied. The token holds the secret key.
func (i Invite) Encode() string {
	var b []byte
	b = append(b, inviteVersion)
	b = append(b, i.Key[:]...)
	var expires int64
	if !i.Expires.IsZero() {
		expires = i.Expires.Unix()
	}
	b = binary.AppendVarint(b, expires)
	b = binary.AppendUvarint(b, uint64(len(i.Addrs)))
	for _, a := range i.Addrs {
		raw := a.Bytes()
		b = binary.AppendUvarint(b, uint64(len(raw)))
		b = append(b, raw...)
	}
	sum := sha256.Sum256(b)
	b = append(b, sum[:inviteChecksumSize]...)
	return InvitePrefix + base64.RawURLEncoding.EncodeToString(b)
}

// DecodeInvite parses a token from Encode and checks it at time now: every address must carry a
// /p2p/ peer ID, there must be at least one, and the invite must not have expired.
func DecodeInvite(s string, now time.Time) (Invite, error) {
	var inv Invite
	s = strings.TrimSpace(s)
	body, ok := strings.CutPrefix(s, InvitePrefix)
	if !ok {
		if strings.HasPrefix(s, "syn4pse") {
			return inv, fmt.Errorf("%w: token format %q is not supported by this syn4pse (want %q); update syn4pse or ask for a new invite", ErrInviteVersion, prefixOf(s), InvitePrefix)
		}
		return inv, fmt.Errorf("%w: a token starts with %q", ErrInviteMalformed, InvitePrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return inv, fmt.Errorf("%w: not base64url (copied incompletely?): %v", ErrInviteMalformed, err)
	}
	if len(b) < 1+len(inv.Key)+inviteChecksumSize {
		return inv, fmt.Errorf("%w: too short (copied incompletely?)", ErrInviteMalformed)
	}
	payload, check := b[:len(b)-inviteChecksumSize], b[len(b)-inviteChecksumSize:]
	if sum := sha256.Sum256(payload); !bytes.Equal(sum[:inviteChecksumSize], check) {
		return inv, fmt.Errorf("%w: checksum mismatch (copied incompletely or altered?)", ErrInviteMalformed)
	}
	if payload[0] != inviteVersion {
		return inv, fmt.Errorf("%w: version %d, this syn4pse reads version %d; update syn4pse or ask for a new invite", ErrInviteVersion, payload[0], inviteVersion)
	}
	r := bytes.NewReader(payload[1:])
	if _, err := io.ReadFull(r, inv.Key[:]); err != nil {
		return inv, fmt.Errorf("%w: key: %v", ErrInviteMalformed, err)
	}
	expires, err := binary.ReadVarint(r)
	if err != nil {
		return inv, fmt.Errorf("%w: expiry: %v", ErrInviteMalformed, err)
	}
	if expires != 0 {
		inv.Expires = time.Unix(expires, 0)
	}
	count, err := binary.ReadUvarint(r)
	if err != nil || count > inviteMaxAddrs {
		return inv, fmt.Errorf("%w: address count", ErrInviteMalformed)
	}
	for n := range count {
		a, err := readInviteAddr(r)
		if err != nil {
			return inv, fmt.Errorf("%w: address %d: %v", ErrInviteMalformed, n+1, err)
		}
		inv.Addrs = append(inv.Addrs, a)
	}
	if r.Len() != 0 {
		return inv, fmt.Errorf("%w: %d unexpected trailing bytes", ErrInviteMalformed, r.Len())
	}
	// The field, not Expires.IsZero: an expiry of 0001-01-01 is the zero Time, yet expired.
	if expires != 0 && !now.Before(inv.Expires) {
		return inv, fmt.Errorf("%w: this invite expired at %s; ask for a new one", ErrInviteExpired, inv.Expires.Format(time.RFC3339))
	}
	if len(inv.Addrs) == 0 {
		return inv, fmt.Errorf("%w: the inviting node listed none; ask for a new invite once it is running", ErrInviteNoAddrs)
	}
	return inv, nil
}

// readInviteAddr reads one length-prefixed multiaddr that must name its peer.
func readInviteAddr(r *bytes.Reader) (multiaddr.Multiaddr, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil || size == 0 || size > inviteMaxAddrSize || size > uint64(r.Len()) {
		return nil, errors.New("bad length")
	}
	raw := make([]byte, size)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, err
	}
	a, err := multiaddr.NewMultiaddrBytes(raw)
	if err != nil {
		return nil, err
	}
	if _, err := peer.AddrInfoFromP2pAddr(a); err != nil {
		return nil, fmt.Errorf("%s has no /p2p/ peer ID", a)
	}
	return a, nil
}

// prefixOf returns the part of a token before its first '-', to name an unknown format.
func prefixOf(s string) string {
	before, _, _ := strings.Cut(s, "-")
	if len(before) > 16 {
		before = before[:16]
	}
	return before + "-"
}
