package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ekisa-team/syn4pse/node/access"
	"github.com/ekisa-team/syn4pse/node/config"
)

// addAccessFlags defines the flags with which client commands reach a node that wants an API key
// or serves TLS.
func addAccessFlags(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.String("api-key", "", "API key client commands send to the node (default: the first of server.api_keys in the config) [$"+config.APIKeyEnv+"]")
	fs.String("tls-ca", "", "CA certificate (PEM) to trust for a node serving TLS; implies --tls [$"+config.TLSCAEnv+"]")
	fs.Bool("tls", false, "talk TLS to the node, trusting the system's CAs (default: TLS when the config sets server.tls_cert, trusting that certificate)")
}

// clientAccess returns the dial options that carry the API key and TLS settings for a client
// command: flags first, then the environment, then the node configuration cfg (nil when the
// command did not read one).
func clientAccess(cmd *cobra.Command, cfg *config.Config) ([]grpc.DialOption, error) {
	key := flagOrEnv(cmd, "api-key", config.APIKeyEnv)
	if key == "" && cfg != nil && len(cfg.Server.APIKeys) > 0 {
		key = cfg.Server.APIKeys[0]
	}
	creds, err := clientTLS(cmd, cfg)
	if err != nil {
		return nil, usageError{err}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(access.Bearer(key, false)))
	}
	return opts, nil
}

// clientTLS picks the transport: TLS trusting --tls-ca, TLS trusting the system's CAs (--tls),
// TLS pinned to the configured server.tls_cert, or plain TCP.
func clientTLS(cmd *cobra.Command, cfg *config.Config) (credentials.TransportCredentials, error) {
	if ca := flagOrEnv(cmd, "tls-ca", config.TLSCAEnv); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", ca)
		}
		return credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nil
	}
	if useTLS, _ := cmd.Flags().GetBool("tls"); useTLS {
		return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12}), nil
	}
	if cfg != nil && cfg.Server.TLSCert != "" {
		return pinnedTLS(cfg.Server.TLSCert)
	}
	return insecure.NewCredentials(), nil
}

// pinnedTLS trusts exactly the certificate in certFile (its first PEM block): the client of the
// node's own configuration knows the certificate itself, whatever address it dials (0.0.0.0
// names no host a certificate could be made for).
func pinnedTLS(certFile string) (credentials.TransportCredentials, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("server.tls_cert: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("server.tls_cert %s: no PEM certificate in it", certFile)
	}
	pinned := block.Bytes
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyPeerCertificate's: the chain must start with the pinned certificate.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(chain [][]byte, _ [][]*x509.Certificate) error {
			if len(chain) == 0 || !bytes.Equal(chain[0], pinned) {
				return errors.New("the node's certificate is not server.tls_cert of the configuration (use --tls-ca for another node)")
			}
			return nil
		},
	}), nil
}

// flagOrEnv is the flag's value when set, else the environment variable's.
func flagOrEnv(cmd *cobra.Command, flag, env string) string {
	if v, _ := cmd.Flags().GetString(flag); v != "" {
		return v
	}
	return os.Getenv(env)
}
