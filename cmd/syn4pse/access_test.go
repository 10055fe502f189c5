package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its key into dir.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "syn4pse cli test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestCLIAccess: a node bound to every interface without a key refuses to start (usage exit
// code, both fixes named); a node with a key and TLS answers the client commands that read its
// config (health, as Docker's HEALTHCHECK runs it, status, run), and clients elsewhere with
// --api-key and --tls-ca, or SYN4PSE_API_KEY; a wrong or missing key is refused.
func TestCLIAccess(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "exposed.toml"), []byte("data_dir = \"data\"\n[server]\nhost = \"0.0.0.0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := syn4pse(t, dir, "", "serve", "--config", "exposed.toml")
	if code != 2 || !strings.Contains(stderr, "set server.api_keys") || !strings.Contains(stderr, "server.allow_unauthenticated = true") {
		t.Fatalf("serve on 0.0.0.0 without a key: code %d, %q", code, stderr)
	}

	const key = "sk-cli-test-4e2b8d6f1a"
	if err := tinygguf.Write(filepath.Join(dir, "tiny.gguf"), tinygguf.Options{Seed: 5}); err != nil {
		t.Fatal(err)
	}
	certFile, _ := writeSelfSigned(t, dir)
	grpcPort, httpPort := freePort(t), freePort(t)
	conf := fmt.Sprintf(`data_dir = "data"

[server]
host = "127.0.0.1"
grpc_port = %d
http_port = %d
api_keys = [%q]
tls_cert = "cert.pem"
tls_key = "key.pem"

[models.tiny]
path = "tiny.gguf"
threads = 1
context_length = 256
`, grpcPort, httpPort, key)
	serve := startServe(t, dir, conf)

	deadline := time.Now().Add(time.Minute)
	for {
		out, _, code := syn4pse(t, dir, "", "health")
		if code == 0 && strings.TrimSpace(out) == "serving" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never answered serving: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, stderr, code := syn4pse(t, dir, "", "status"); code != 0 || !strings.Contains(out, "health    serving") {
		t.Fatalf("status with the config's key: code %d, %s %s", code, out, stderr)
	}
	if out, stderr, code := syn4pse(t, dir, "", "run", "tiny", "--max-tokens", "4", "--seed", "1", "Hello"); code != 0 || out == "" {
		t.Fatalf("run with the config's key: code %d, %q %s", code, out, stderr)
	}

	elsewhere := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", grpcPort)
	for _, tt := range []struct {
		env  []string
		args []string
		want string // "" for success, else a piece of the error
	}{
		{nil, []string{"--api-key", key, "--tls-ca", certFile}, ""},
		{[]string{"SYN4PSE_API_KEY=" + key, "SYN4PSE_TLS_CA=" + certFile}, nil, ""},
		{nil, []string{"--tls-ca", certFile}, "missing API key"},
		{nil, []string{"--api-key", "sk-wrong", "--tls-ca", certFile}, "invalid API key"},
		{[]string{"SYN4PSE_API_KEY=sk-wrong"}, []string{"--tls-ca", certFile}, "invalid API key"},
		{nil, []string{"--api-key", key}, "no node answers"}, // plaintext to a TLS port
		{nil, []string{"--api-key", key, "--tls"}, "certificate"},
	} {
		out, stderr, code := syn4pseEnv(t, elsewhere, tt.env, "", append([]string{"models", "list", "--addr", addr}, tt.args...)...)
		if tt.want == "" {
			if code != 0 || !strings.Contains(out, "tiny") {
				t.Errorf("%v %v: code %d, %q %q", tt.env, tt.args, code, out, stderr)
			}
			continue
		}
		if code == 0 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v %v: code %d, stderr %q, want %q", tt.env, tt.args, code, stderr, tt.want)
		}
		if strings.Contains(stderr, key) {
			t.Errorf("%v %v: the error shows the key: %q", tt.env, tt.args, stderr)
		}
	}
	if strings.Contains(serve.log.String(), key) {
		t.Fatalf("the node's log holds its key:\n%s", serve.log.String())
	}
}
