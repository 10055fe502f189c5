package p2p

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// testInvite returns an invite with two addresses of a random peer, expiring at expires.
func testInvite(t *testing.T, expires time.Time) Invite {
	t.Helper()
	key, err := GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []multiaddr.Multiaddr
	for _, s := range []string{"/ip4/192.168.1.20/tcp/4001", "/ip6/fd00::20/tcp/4001"} {
		a := multiaddr.StringCast(s + "/p2p/" + id.String())
		addrs = append(addrs, a)
	}
	return Invite{Key: key, Addrs: addrs, Expires: expires}
}

func TestInviteRoundTrip(t *testing.T) {
	now := time.Now()
	for _, expires := range []time.Time{{}, now.Add(24 * time.Hour).Truncate(time.Second)} {
		inv := testInvite(t, expires)
		token := inv.Encode()
		if !strings.HasPrefix(token, InvitePrefix) || strings.ContainsAny(token, " \t\n+/=") {
			t.Fatalf("token %q is not one copy-pasteable word with the prefix", token)
		}
		got, err := DecodeInvite(" "+token+"\n", now)
		if err != nil {
			t.Fatal(err)
		}
		if got.Key != inv.Key || !got.Expires.Equal(inv.Expires) || got.Expires.IsZero() != inv.Expires.IsZero() {
			t.Fatalf("decoded key/expiry differ: %v vs %v", got.Expires, inv.Expires)
		}
		if len(got.Addrs) != len(inv.Addrs) {
			t.Fatalf("decoded %d addrs, want %d", len(got.Addrs), len(inv.Addrs))
		}
		for i := range got.Addrs {
			if !got.Addrs[i].Equal(inv.Addrs[i]) {
				t.Errorf("addr %d: %s, want %s", i, got.Addrs[i], inv.Addrs[i])
			}
			if _, err := peer.AddrInfoFromP2pAddr(got.Addrs[i]); err != nil {
				t.Errorf("addr %d lost its peer ID: %v", i, err)
			}
		}
		t.Logf("token (%d chars, expires %v)", len(token), !expires.IsZero())
	}
}

func TestInviteExpired(t *testing.T) {
	expires := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	token := testInvite(t, expires).Encode()
	if _, err := DecodeInvite(token, expires.Add(-time.Second)); err != nil {
		t.Fatalf("rejected a second before expiry: %v", err)
	}
	_, err := DecodeInvite(token, expires.Add(time.Minute))
	if !errors.Is(err, ErrInviteExpired) {
		t.Fatalf("expired invite: %v, want ErrInviteExpired", err)
	}
	if !strings.Contains(err.Error(), "expired at 2026-03-01") || !strings.Contains(err.Error(), "ask for a new one") {
		t.Errorf("error %q should say when it expired and what to do", err)
	}
}

// rawToken encodes payload as a token with a valid checksum, to craft bad invites.
func rawToken(payload []byte) string {
	sum := sha256.Sum256(payload)
	return InvitePrefix + base64.RawURLEncoding.EncodeToString(append(payload, sum[:inviteChecksumSize]...))
}

func TestInviteBad(t *testing.T) {
	now := time.Now()
	good := testInvite(t, time.Time{})
	token := good.Encode()
	body := strings.TrimPrefix(token, InvitePrefix)
	decoded, _ := base64.RawURLEncoding.DecodeString(body)
	payload := decoded[:len(decoded)-inviteChecksumSize]

	v2 := append([]byte{2}, payload[1:]...)
	trailing := append(append([]byte{}, payload...), 0)
	noP2P := Invite{Key: good.Key, Addrs: []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/10.0.0.1/tcp/4001")}}
	flipped := []byte(body)
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrInviteMalformed},
		{"other text", "hello", ErrInviteMalformed},
		{"truncated", token[:len(token)-10], ErrInviteMalformed},
		{"altered", InvitePrefix + string(flipped), ErrInviteMalformed},
		{"not base64", InvitePrefix + "!!!", ErrInviteMalformed},
		{"space inside", token[:20] + " " + token[20:], ErrInviteMalformed},
		{"trailing bytes", rawToken(trailing), ErrInviteMalformed},
		{"address without peer ID", noP2P.Encode(), ErrInviteMalformed},
		{"payload version 2", rawToken(v2), ErrInviteVersion},
		{"token format 2", "syn4pse2-" + body, ErrInviteVersion},
		{"no addresses", Invite{Key: good.Key}.Encode(), ErrInviteNoAddrs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeInvite(tt.token, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
