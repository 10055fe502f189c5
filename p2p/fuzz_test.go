package p2p

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// fuzzNow is the clock invites are checked against while fuzzing, fixed so that a crasher
// replays the same way.
var fuzzNow = time.Unix(1_750_000_000, 0)

// fuzzInvite is an invite with fixed contents: a seed whose bytes do not change between runs.
func fuzzInvite(tb testing.TB, expires time.Time, addrs ...string) Invite {
	tb.Helper()
	_, pub, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	inv := Invite{Expires: expires}
	copy(inv.Key[:], bytes.Repeat([]byte{0xa5}, len(inv.Key)))
	for _, a := range addrs {
		inv.Addrs = append(inv.Addrs, multiaddr.StringCast(a+"/p2p/"+id.String()))
	}
	return inv
}

// checksummed wraps payload as a token the way Encode does, so the fuzzer's bytes get past the
// checksum and reach the parser behind it.
func checksummed(payload []byte) string {
	sum := sha256.Sum256(payload)
	return InvitePrefix + base64.RawURLEncoding.EncodeToString(append(payload[:len(payload):len(payload)], sum[:inviteChecksumSize]...))
}

// FuzzDecodeInvite decodes fuzzed tokens, both as pasted text and as payloads given a valid
// checksum: decoding never panics, and a token that decodes re-encodes to one that decodes to
// the same invite.
func FuzzDecodeInvite(f *testing.F) {
	valid := []Invite{
		fuzzInvite(f, time.Time{}, "/ip4/192.168.1.20/tcp/4001", "/ip6/fd00::20/tcp/4001"),
		fuzzInvite(f, fuzzNow.Add(24*time.Hour), "/dns4/node.local/tcp/4001"),
		fuzzInvite(f, fuzzNow.Add(-time.Hour), "/ip4/10.0.0.1/udp/4001/quic-v1"),
		fuzzInvite(f, time.Time{}),
	}
	for _, inv := range valid {
		token := inv.Encode()
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, InvitePrefix))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(token, raw[:len(raw)-inviteChecksumSize])
	}
	f.Add("syn4pse2-AAAA", []byte{2})
	f.Add("  syn4pse1-\n", []byte{})
	f.Add("syn4pse1-!!!!", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})

	f.Fuzz(func(t *testing.T, token string, payload []byte) {
		for _, s := range []string{token, checksummed(payload)} {
			inv, err := DecodeInvite(s, fuzzNow)
			if err != nil {
				continue
			}
			if expires := tokenExpiry(t, s); expires != 0 && !fuzzNow.Before(time.Unix(expires, 0)) {
				t.Fatalf("token %q expired at %v, yet decoded as expiring %v", s, time.Unix(expires, 0), inv.Expires)
			}
			again, err := DecodeInvite(inv.Encode(), fuzzNow)
			if err != nil {
				t.Fatalf("token %q decoded, but its re-encoding does not: %v", s, err)
			}
			if again.Key != inv.Key || !again.Expires.Equal(inv.Expires) || again.Expires.IsZero() != inv.Expires.IsZero() ||
				len(again.Addrs) != len(inv.Addrs) {
				t.Fatalf("token %q: re-encoded invite differs: %+v vs %+v", s, again, inv)
			}
			for i := range inv.Addrs {
				if !again.Addrs[i].Equal(inv.Addrs[i]) {
					t.Fatalf("token %q: address %d is %s after re-encoding, was %s", s, i, again.Addrs[i], inv.Addrs[i])
				}
			}
		}
	})
}

// tokenExpiry reads the expiry field (Unix seconds, 0 never) of a token that decoded.
func tokenExpiry(t *testing.T, token string) int64 {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(token), InvitePrefix))
	if err != nil || len(raw) < 1+len(SwarmKey{}) {
		t.Fatalf("token %q decoded, but its payload does not read back: %v", token, err)
	}
	expires, n := binary.Varint(raw[1+len(SwarmKey{}):])
	if n <= 0 {
		t.Fatalf("token %q decoded, but its expiry does not read back", token)
	}
	return expires
}

// FuzzParseSwarmKey parses fuzzed key files: parsing never panics, and a key that parses
// writes out (String, MarshalText) as a file that parses to the same key.
func FuzzParseSwarmKey(f *testing.F) {
	key := bytes.Repeat([]byte{0x3c}, 32)
	f.Add([]byte(swarmKeyHeader + "\n" + swarmKeyBase16 + "\n" + strings.Repeat("3c", 32) + "\n"))
	f.Add([]byte(swarmKeyHeader + "\r\n" + swarmKeyBase64 + "\r\n" + base64.StdEncoding.EncodeToString(key) + "\r\n"))
	f.Add(append([]byte(swarmKeyHeader+"\n"+swarmKeyBin+"\n"), append(bytes.Repeat([]byte{'\n'}, 32), " \n"...)...))
	f.Add([]byte(swarmKeyHeader + "\n" + "/base32/\n" + "AAAA"))
	f.Add([]byte(swarmKeyHeader + "\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseSwarmKey(data)
		if err != nil {
			return
		}
		text, err := k.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var again SwarmKey
		if err := again.UnmarshalText(text); err != nil {
			t.Fatalf("%q parsed, but its re-encoding %q does not: %v", data, text, err)
		}
		if again != k {
			t.Fatalf("%q: re-encoded key differs", data)
		}
	})
}
