// Package auth is the service's trust boundary: who calls (API keys and
// client certificate identities, cached per replica), what they may call
// (scopes and tenants, checked by a gRPC interceptor before any handler
// runs), who acts (a bound key's user, the actor a service key names, or
// the platform operator) and what the actor may change (the admin
// permission table and the escalation rule, checked inside each write's
// transaction on the tenant's current state).
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// An API key reads crmz_<id>_<secret>: the id (16 lowercase hex digits)
// is public and finds the key's record; the secret (32 random bytes,
// unpadded base64url) is shown once, at creation, and only its SHA-256 is
// stored. A secret of 256 random bits needs no slow hash: nobody can guess
// it, so a fast hash compared in constant time is as safe and costs
// nanoseconds per call.
const (
	keyPrefix    = "crmz_"
	idBytes      = 8
	secretBytes  = 32
	secretLength = 43 // base64url of 32 bytes, unpadded
)

// NewKey returns a new API key: its id, the whole key to hand out once, and
// the hash of its secret to store.
func NewKey() (id, key string, hash []byte, err error) {
	var b [idBytes + secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", nil, err
	}
	id = hex.EncodeToString(b[:idBytes])
	secret := base64.RawURLEncoding.EncodeToString(b[idBytes:])
	h := hashSecret(secret)
	return id, keyPrefix + id + "_" + secret, h[:], nil
}

// NewCredentialID returns a random credential id, for certificate
// identities.
func NewCredentialID() (string, error) {
	var b [idBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// parseKey splits a presented key into its id and its secret; ok is false
// when it is not shaped like a key.
func parseKey(key string) (id, secret string, ok bool) {
	rest, found := strings.CutPrefix(key, keyPrefix)
	if !found || len(rest) != 2*idBytes+1+secretLength || rest[2*idBytes] != '_' {
		return "", "", false
	}
	id, secret = rest[:2*idBytes], rest[2*idBytes+1:]
	if !ValidCredentialID(id) {
		return "", "", false
	}
	return id, secret, true
}

func hashSecret(secret string) [sha256.Size]byte {
	var buf [64]byte // a key's secret fits: its bytes are hashed from the stack
	return sha256.Sum256(append(buf[:0], secret...))
}

// ValidCredentialID reports whether id is 16 lowercase hex digits.
func ValidCredentialID(id string) bool {
	if len(id) != 2*idBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
