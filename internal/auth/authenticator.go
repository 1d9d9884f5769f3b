package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

// CredentialStore is where the authenticator reads credentials.
type CredentialStore interface {
	Credential(ctx context.Context, id string) (store.Credential, error)
	Credentials(ctx context.Context, after string, limit int, includeRevoked bool) ([]store.Credential, error)
}

// Options configures an Authenticator.
type Options struct {
	// Enabled turns authentication on. Off, every call is anonymous with
	// every scope and tenant, and actors are taken as requests name them.
	Enabled bool
	// Store holds the credentials.
	Store CredentialStore
	// Refresh is how often the cached credentials are read again, so that
	// a revocation on another replica is refused within it (2s by default).
	Refresh time.Duration
	// Now is the clock of expiry (time.Now by default).
	Now    func() time.Time
	Logger *zap.Logger
	// Events records refused authentications; nil records none.
	Events Recorder
}

// Authenticator finds the principal of a call from its API key (metadata
// "authorization: Bearer <key>") or its verified client certificate.
//
// Every credential is cached per replica: the whole credential table is
// read at Start and again every Refresh, so a call never waits for the
// database to authenticate a credential it has seen. A key id missing from
// the cache (a key created a moment ago, by another replica or by `authzd
// keys create`) is read from the store on first use; ids unknown there are
// remembered until the next refresh, so unknown ids cannot flood the
// database. Keys created or revoked through this replica update its cache
// at once.
type Authenticator struct {
	enabled bool
	st      CredentialStore
	refresh time.Duration
	now     func() time.Time
	log     *zap.Logger
	refused *refusals

	snap    atomic.Pointer[snapshot]
	missMu  sync.Mutex
	missing map[string]bool // ids the store did not know at the last look

	stop chan struct{}
	done chan struct{}
}

// snapshot is an immutable copy of the credential table, each credential
// with the principal it grants, built once.
type snapshot struct {
	byID   map[string]cached
	byCert map[string]cached // unrevoked credentials by certificate identity
}

type cached struct {
	c      store.Credential
	p      *Principal
	proven *provenKey // nil for a certificate's entry
}

// provenKey remembers the last key that proved its credential's secret,
// so that the same key presented again is compared with it in constant
// time (tens of nanoseconds) rather than hashed again (SHA-256 took
// 0.35-0.7 µs of a Check under load). It belongs to one snapshot's entry:
// a credential reloaded, remembered or revoked starts without one, and
// the first call after that hashes.
type provenKey struct{ key atomic.Pointer[string] }

// matches reports whether key is the key that last proved the secret,
// comparing every byte whatever the first difference (a key's length is
// public: it is the format's). crypto/subtle compares byte slices, and
// converting a 65-byte key to one would allocate on every call.
func (p *provenKey) matches(key string) bool {
	if p == nil {
		return false
	}
	k := p.key.Load()
	if k == nil || len(*k) != len(key) {
		return false
	}
	var diff byte
	for i := range len(key) {
		diff |= (*k)[i] ^ key[i]
	}
	return diff == 0
}

// remember keeps key, which proved the secret.
func (p *provenKey) remember(key string) {
	if p == nil {
		return
	}
	k := strings.Clone(key) // not the request's header buffer
	p.key.Store(&k)
}

func newSnapshot(cs []store.Credential) *snapshot {
	s := &snapshot{byID: make(map[string]cached, len(cs)), byCert: map[string]cached{}}
	// Revoked ones first, so that a certificate identity maps to the
	// credential in force.
	slices.SortFunc(cs, func(a, b store.Credential) int {
		switch {
		case a.Revoked() == b.Revoked():
			return strings.Compare(a.ID, b.ID)
		case a.Revoked():
			return -1
		}
		return 1
	})
	for _, c := range cs {
		s.put(c)
	}
	return s
}

func (s *snapshot) put(c store.Credential) {
	e := cached{c: c, p: principalOf(c), proven: &provenKey{}}
	s.byID[c.ID] = e
	if c.Certificate == "" {
		return
	}
	if c.Revoked() {
		if cur, ok := s.byCert[c.Certificate]; ok && cur.c.ID == c.ID {
			delete(s.byCert, c.Certificate)
		}
		return
	}
	s.byCert[c.Certificate] = e
}

// maxMissing bounds the unknown ids remembered between refreshes.
const maxMissing = 10000

// NewAuthenticator returns an authenticator; Start loads its cache.
func NewAuthenticator(opts Options) *Authenticator {
	if opts.Refresh <= 0 {
		opts.Refresh = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	a := &Authenticator{
		enabled: opts.Enabled, st: opts.Store, refresh: opts.Refresh, now: opts.Now, log: opts.Logger,
		refused: newRefusals(opts.Events, opts.Logger, opts.Now), missing: map[string]bool{},
	}
	a.snap.Store(newSnapshot(nil))
	return a
}

// Enabled reports whether callers must authenticate.
func (a *Authenticator) Enabled() bool { return a.enabled }

// Start reads every credential and keeps reading them every Refresh until
// Close. With authentication off it does nothing.
func (a *Authenticator) Start(ctx context.Context) error {
	if !a.enabled {
		return nil
	}
	if err := a.reload(ctx); err != nil {
		return fmt.Errorf("load credentials: %w", err)
	}
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go a.loop(context.WithoutCancel(ctx))
	return nil
}

// Close stops the refreshes and writes the summary of refusals still
// being counted.
func (a *Authenticator) Close() {
	if a.stop != nil {
		close(a.stop)
		<-a.done
		a.stop = nil
	}
	a.refused.flush()
}

func (a *Authenticator) loop(base context.Context) {
	defer close(a.done)
	t := time.NewTicker(a.refresh)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(base, a.refresh)
			if err := a.reload(ctx); err != nil {
				a.log.Warn("refresh credentials; serving the cached ones", zap.Error(err))
			}
			cancel()
		}
	}
}

// Reload reads every credential again, at once: after a replica
// reconnects to the database, say.
func (a *Authenticator) Reload(ctx context.Context) error {
	if !a.enabled {
		return nil
	}
	return a.reload(ctx)
}

// Refresh reads one credential again, at once: when another replica
// revoked it.
func (a *Authenticator) Refresh(ctx context.Context, id string) error {
	if !a.enabled {
		return nil
	}
	c, err := a.st.Credential(ctx, id)
	if err != nil {
		return err
	}
	a.Remember(c)
	return nil
}

// reload reads the whole credential table into a new snapshot.
func (a *Authenticator) reload(ctx context.Context) error {
	var all []store.Credential
	after := ""
	for {
		page, err := a.st.Credentials(ctx, after, 1000, true)
		if err != nil {
			return err
		}
		all = append(all, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	// Credentials change only by being revoked, and are never deleted: a
	// credential the cache holds (remembered while this read ran) stays,
	// and a revocation either side saw wins.
	for {
		cur := a.snap.Load()
		merged := make(map[string]store.Credential, len(all)+len(cur.byID))
		for id, e := range cur.byID {
			merged[id] = e.c
		}
		for _, c := range all {
			if old, ok := merged[c.ID]; !ok || !old.Revoked() {
				merged[c.ID] = c
			}
		}
		if a.snap.CompareAndSwap(cur, newSnapshot(slices.Collect(maps.Values(merged)))) {
			break
		}
	}
	a.missMu.Lock()
	clear(a.missing)
	a.missMu.Unlock()
	return nil
}

// Remember puts a credential created or revoked through this replica into
// the cache at once.
func (a *Authenticator) Remember(c store.Credential) {
	for {
		cur := a.snap.Load()
		next := &snapshot{byID: maps.Clone(cur.byID), byCert: maps.Clone(cur.byCert)}
		next.put(c)
		if a.snap.CompareAndSwap(cur, next) {
			break
		}
	}
	a.missMu.Lock()
	delete(a.missing, c.ID)
	a.missMu.Unlock()
}

// Errors of authentication. The message a caller sees is the same whether
// a key id is unknown or its secret wrong; only the holder of the right
// secret learns that the key expired or was revoked.
var (
	errNoCredential  = &UnauthenticatedError{Reason: "MISSING_CREDENTIAL", Message: "no credential: send the metadata \"authorization: Bearer <key>\" or a client certificate"}
	errBadCredential = &UnauthenticatedError{Reason: "INVALID_CREDENTIAL", Message: "invalid credential"}
)

// UnauthenticatedError is a call without a valid credential; it maps to
// UNAUTHENTICATED.
type UnauthenticatedError struct {
	Reason  string
	Message string
	// cause is what the security log records: why the credential was
	// refused, which the caller is not told; credential names what was
	// presented ("key:<id>", "cert:<identity>").
	cause, credential string
}

func (e *UnauthenticatedError) Error() string { return e.Message }

func refusal(base *UnauthenticatedError, cause string) *UnauthenticatedError {
	e := *base
	e.cause = cause
	return &e
}

// Authenticate returns the principal of the call in ctx.
func (a *Authenticator) Authenticate(ctx context.Context) (*Principal, error) {
	if !a.enabled {
		return insecure, nil
	}
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		return a.byKey(ctx, vals[0])
	}
	if identity, ok := certificateIdentity(ctx); ok {
		return a.byCertificate(identity)
	}
	return nil, errNoCredential
}

// dummyHash is compared against when a key id is unknown, so that an
// unknown id and a wrong secret take the same time.
var dummyHash = make([]byte, sha256.Size)

func (a *Authenticator) byKey(ctx context.Context, header string) (*Principal, error) {
	scheme, key, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return nil, refusal(errBadCredential, "MALFORMED_CREDENTIAL")
	}
	key = strings.TrimSpace(key)
	id, secret, ok := parseKey(key)
	if !ok {
		return nil, refusal(errBadCredential, "MALFORMED_CREDENTIAL")
	}
	e, found, err := a.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	if found && e.proven.matches(key) {
		return a.inForce(e)
	}
	hash := hashSecret(secret)
	want := dummyHash
	if found && e.c.SecretHash != nil {
		want = e.c.SecretHash
	}
	if subtle.ConstantTimeCompare(hash[:], want) != 1 || !found || e.c.SecretHash == nil {
		cause := "WRONG_SECRET"
		if !found {
			cause = "UNKNOWN_CREDENTIAL"
		}
		r := refusal(errBadCredential, cause)
		r.credential = "key:" + id
		return nil, r
	}
	e.proven.remember(key)
	return a.inForce(e)
}

func (a *Authenticator) byCertificate(identity string) (*Principal, error) {
	e, ok := a.snap.Load().byCert[identity]
	if !ok {
		return nil, &UnauthenticatedError{Reason: "UNKNOWN_CERTIFICATE", Message: fmt.Sprintf("certificate identity %q has no credential", identity),
			cause: "UNKNOWN_CERTIFICATE", credential: "cert:" + identity}
	}
	return a.inForce(e)
}

// inForce refuses a revoked or expired credential whose holder proved
// possession, saying which.
func (a *Authenticator) inForce(e cached) (*Principal, error) {
	c, p := e.c, e.p
	switch {
	case c.Revoked():
		return nil, &UnauthenticatedError{Reason: "CREDENTIAL_REVOKED", Message: "the credential was revoked", cause: "CREDENTIAL_REVOKED", credential: p.Credential}
	case !c.ExpiresAt.IsZero() && !a.now().Before(c.ExpiresAt):
		return nil, &UnauthenticatedError{Reason: "CREDENTIAL_EXPIRED", Message: "the credential expired at " + c.ExpiresAt.Format(time.RFC3339),
			cause: "CREDENTIAL_EXPIRED", credential: p.Credential}
	}
	return p, nil
}

// lookup finds a credential in the cache, else in the store.
func (a *Authenticator) lookup(ctx context.Context, id string) (cached, bool, error) {
	if e, ok := a.snap.Load().byID[id]; ok {
		return e, true, nil
	}
	a.missMu.Lock()
	known := a.missing[id]
	a.missMu.Unlock()
	if known {
		return cached{}, false, nil
	}
	c, err := a.st.Credential(ctx, id)
	var nf *model.NotFoundError
	switch {
	case errors.As(err, &nf):
		a.missMu.Lock()
		if len(a.missing) >= maxMissing {
			clear(a.missing)
		}
		a.missing[id] = true
		a.missMu.Unlock()
		return cached{}, false, nil
	case err != nil:
		return cached{}, false, fmt.Errorf("read credential %s: %w", id, err)
	}
	a.Remember(c)
	return cached{c: c, p: principalOf(c)}, true, nil
}

// certificateIdentity returns the identity of the call's verified client
// certificate: its first URI SAN, else its common name.
func certificateIdentity(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	return Identity(info.State.VerifiedChains[0][0])
}

// Identity is a certificate's identity: its first URI SAN (a SPIFFE id,
// say), else its subject's common name.
func Identity(cert *x509.Certificate) (string, bool) {
	if len(cert.URIs) > 0 {
		return cert.URIs[0].String(), true
	}
	if cert.Subject.CommonName != "" {
		return cert.Subject.CommonName, true
	}
	return "", false
}
