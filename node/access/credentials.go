package access

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// bearerCredentials sends an API key with every gRPC call.
type bearerCredentials struct {
	key    string
	secure bool
}

// Bearer returns per-call gRPC credentials that send key as "authorization: Bearer KEY".
// requireTLS refuses to send it over a connection without TLS; the CLI passes false so that it
// can talk to a node without TLS (on loopback, or on a LAN its user trusts).
func Bearer(key string, requireTLS bool) credentials.PerRPCCredentials {
	return bearerCredentials{key: key, secure: requireTLS}
}

// GetRequestMetadata returns the authorization metadata.
func (b bearerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.key}, nil
}

// RequireTransportSecurity says whether the key may only travel over TLS.
func (b bearerCredentials) RequireTransportSecurity() bool { return b.secure }
