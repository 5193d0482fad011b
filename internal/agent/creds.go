package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"google.golang.org/grpc/peer"

	"github.com/volleyscope/volleyscope/internal/version"
)

// Credentials are what both sides need to trust each other: the token,
// always, and for mutual TLS a tls.Config (TLSConfig builds one). With
// TLS nil the traffic, the token with it, travels in clear.
type Credentials struct {
	Token string
	TLS   *tls.Config
}

// TLSConfig reads a certificate, its key and the CA that signs the other
// side's certificate, for mutual TLS. An agent's (server) requires and
// verifies the controller's certificate; a controller's verifies the
// agent's against the CA and the name it dials.
func TLSConfig(certFile, keyFile, caFile string, server bool) (*tls.Config, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("mutual TLS needs --cert, --key and --ca together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load --cert %s and --key %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read --ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read --ca %s: no PEM certificate in it", caFile)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if server {
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	} else {
		c.RootCAs = pool
	}
	return c, nil
}

// ReadToken reads a token file: its first line, without surrounding
// blanks. An empty token is an error.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read --token-file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	if tok = strings.TrimSpace(tok); tok == "" {
		return "", fmt.Errorf("read --token-file %s: it is empty", path)
	}
	return tok, nil
}

// callCreds sends the token with every call, and the protocol version
// and volleyscope version it speaks, so that the agent checks both before
// any handler runs, whatever the method.
type callCreds struct {
	token    string
	protocol int
}

// Metadata keys of every call.
const (
	tokenKey    = "volleyscope-token"
	protocolKey = "volleyscope-protocol"
	versionKey  = "volleyscope-version"
)

func (c callCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{tokenKey: c.token, protocolKey: strconv.Itoa(c.protocol), versionKey: version.String()}, nil
}

// RequireTransportSecurity is false: a token without TLS is allowed,
// with the agent's warning that it travels in clear.
func (callCreds) RequireTransportSecurity() bool { return false }

// peerOf names a call's remote address for the agent's log.
func peerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "an unknown peer"
}
