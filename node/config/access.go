package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/ekisa-team/syn4pse/node/config/schema"
)

// Variables the CLI's client commands read. They are not keys of a node's configuration, so
// Load neither reads them nor calls them unknown.
const (
	// APIKeyEnv is the API key client commands send (their --api-key flag).
	APIKeyEnv = "SYN4PSE_API_KEY"
	// TLSCAEnv is the CA certificate (PEM) client commands trust for a node serving TLS (their
	// --tls-ca flag).
	TLSCAEnv = "SYN4PSE_TLS_CA"
)

// clientEnv are the SYN4PSE_ variables that are not the node's configuration.
var clientEnv = []string{configEnv, APIKeyEnv, TLSCAEnv}

// envAliases are shorter names of some variables, and the variable each stands for.
var envAliases = map[string]string{"SYN4PSE_API_KEYS": "SYN4PSE_SERVER_API_KEYS"}

// Exposed says whether the servers listen where other machines reach them: on every interface
// ("", 0.0.0.0, ::), on a LAN address, or on a host name (it resolves to whatever DNS says).
func (s Server) Exposed() bool {
	if strings.EqualFold(s.Host, "localhost") {
		return false
	}
	addr, err := netip.ParseAddr(s.Host)
	return err != nil || !addr.IsLoopback()
}

// CheckAccess refuses a node that other machines could reach with no API key, unless the
// configuration says that is meant (server.allow_unauthenticated). Open model servers on
// 0.0.0.0 are a known way machines get abused. The node checks this when it starts, not Load:
// client commands read the same configuration and must not be refused.
func (s Server) CheckAccess() error {
	if !s.Exposed() || len(s.APIKeys) > 0 || s.AllowUnauthenticated {
		return nil
	}
	where := fmt.Sprintf("%q", s.Host)
	if s.Host == "" {
		where = `"" (every interface)`
	}
	return schema.Invalidf("server.host is %s, reachable from other machines, and no API key is set: "+
		"set server.api_keys = [\"KEY\"] (or SYN4PSE_API_KEYS=KEY) so that clients must send \"Authorization: Bearer KEY\", "+
		"or set server.allow_unauthenticated = true (SYN4PSE_SERVER_ALLOW_UNAUTHENTICATED=true) to serve without keys on a trusted LAN "+
		"(or listen on 127.0.0.1 only)", where)
}

// checkAccess checks the keys of [server] that go together; its messages never show a key.
func (s Server) checkAccess() []error {
	var errs []error
	for i, key := range s.APIKeys {
		if key == "" {
			errs = append(errs, schema.Invalidf("server.api_keys: key %d is empty", i+1))
			continue
		}
		for _, r := range key {
			if r <= ' ' || r > '~' {
				errs = append(errs, schema.Invalidf("server.api_keys: key %d has a space, a control or a non-ASCII character; "+
					"keys travel in an HTTP header (Authorization: Bearer KEY): use letters, digits and punctuation", i+1))
				break
			}
		}
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		errs = append(errs, schema.Invalidf("server.tls_cert and server.tls_key go together: set both (a PEM certificate and its private key) or neither"))
	}
	return errs
}
