package auth

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// Bearer returns the credentials a client sends an API key with: the
// metadata "authorization: Bearer <key>" on every call. With
// allowPlaintext the key may travel over a connection without TLS (a
// loopback address, a test); otherwise gRPC refuses to send it there.
func Bearer(key string, allowPlaintext bool) credentials.PerRPCCredentials {
	return bearer{key: key, plaintext: allowPlaintext}
}

type bearer struct {
	key       string
	plaintext bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.key}, nil
}

func (b bearer) RequireTransportSecurity() bool { return !b.plaintext }
