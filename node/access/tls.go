package access

import (
	"crypto/tls"
	"fmt"
	"net"
)

// ServerTLS loads the API ports' certificate (PEM, a chain is fine) and its private key once;
// nil, nil when both names are "" (plain TCP).
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS: server.tls_cert %s and server.tls_key %s: %w (want a PEM certificate and the PEM private key it was made for, readable by this user)",
			certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Listener returns ln serving TLS with cfg, offering the ALPN protocols protos ("h2" for gRPC;
// "h2" and "http/1.1" for HTTP); ln itself where cfg or ln is nil. A listener rather than
// server credentials keeps TLS on the TCP ports only: the same gRPC server also serves mesh
// peers over libp2p, which encrypts on its own.
func Listener(ln net.Listener, cfg *tls.Config, protos ...string) net.Listener {
	if cfg == nil || ln == nil {
		return ln
	}
	cfg = cfg.Clone()
	cfg.NextProtos = protos
	return tls.NewListener(ln, cfg)
}
