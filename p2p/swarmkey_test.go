package p2p

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/pnet"
)

func TestSwarmKeyRoundTrip(t *testing.T) {
	k, err := GenerateSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	if k == (SwarmKey{}) {
		t.Fatal("generated an all-zero key")
	}
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if want := "/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(k[:]); string(text) != want || k.String() != want {
		t.Fatalf("text form %q, want %q", text, want)
	}
	var back SwarmKey
	if err := back.UnmarshalText(text); err != nil || back != k {
		t.Fatalf("UnmarshalText: %v, equal %v", err, back == k)
	}
	// libp2p itself reads our format.
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(text))
	if err != nil || !bytes.Equal(psk, k[:]) {
		t.Fatalf("libp2p reads our key as %x, %v", psk, err)
	}

	path := filepath.Join(t.TempDir(), "swarm.key")
	if err := SaveSwarmKey(path, k); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("saved key: %v, mode %v, want 0600", err, info.Mode().Perm())
	}
	loaded, err := LoadSwarmKey(path)
	if err != nil || loaded != k {
		t.Fatalf("LoadSwarmKey: %v, equal %v", err, loaded == k)
	}

	fp := k.Fingerprint()
	if _, err := hex.DecodeString(fp); err != nil || len(fp) != 8 || fp != loaded.Fingerprint() {
		t.Errorf("fingerprint %q", fp)
	}
	other, _ := GenerateSwarmKey()
	if other.Fingerprint() == fp {
		t.Error("two keys share a fingerprint")
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "swarm", k)
	if strings.Contains(logs.String(), hex.EncodeToString(k[:])) || !strings.Contains(logs.String(), fp) {
		t.Errorf("a logged key should show its fingerprint, not the secret: %s", logs.String())
	}
}

func TestLoadSwarmKeyMissing(t *testing.T) {
	_, err := LoadSwarmKey(filepath.Join(t.TempDir(), "swarm.key"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key: %v, want fs.ErrNotExist", err)
	}
}

func TestParseSwarmKey(t *testing.T) {
	var key SwarmKey
	for i := range key {
		key[i] = byte(i * 7)
	}
	key[31] = '\n' // a raw key may end in a newline byte
	hexKey := hex.EncodeToString(key[:])
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"base16", "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey, true},
		{"base16 trailing newline", "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey + "\n", true},
		{"base16 upper case CRLF", "/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + strings.ToUpper(hexKey) + "\r\n", true},
		{"base64", "/key/swarm/psk/1.0.0/\n/base64/\n" + base64.StdEncoding.EncodeToString(key[:]) + "\n", true},
		{"bin", "/key/swarm/psk/1.0.0/\n/bin/\n" + string(key[:]), true},
		{"bin trailing newline", "/key/swarm/psk/1.0.0/\n/bin/\n" + string(key[:]) + "\n", true},
		{"empty", "", false},
		{"no header", hexKey, false},
		{"wrong header", "/key/swarm/psk/2.0.0/\n/base16/\n" + hexKey, false},
		{"unknown encoding", "/key/swarm/psk/1.0.0/\n/base58/\n" + hexKey, false},
		{"short", "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey[:62], false},
		{"long", "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey + "00", false},
		{"not hex", "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("zz", 32), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSwarmKey([]byte(tt.in))
			if !tt.ok {
				if err == nil {
					t.Fatal("accepted a bad key")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != key {
				t.Fatalf("parsed %x, want %x", got, key)
			}
			if psk, err := pnet.DecodeV1PSK(strings.NewReader(tt.in)); err != nil || !bytes.Equal(psk, key[:]) {
				t.Errorf("libp2p reads it as %x, %v", psk, err)
			}
		})
	}
}
