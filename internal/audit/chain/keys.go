package chain

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"
)

// A Key links entries: an entry's hash is HMAC-SHA-256 under the key's
// secret of the previous hash and the entry's canonical content. Without
// the secret nobody, a database administrator included, can compute the
// hash of an edited entry, nor rehash a chain from an edit onwards. The id
// is stored beside every hash, so that a chain verifies across rotations.
type Key struct {
	ID     string
	secret []byte
}

// Link returns the keyed hash of an entry.
func (k *Key) Link(prev, canon []byte) []byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write(prev)
	m.Write(canon)
	return m.Sum(make([]byte, 0, HashSize))
}

// Linker computes keyed links reusing one MAC state: for the writers,
// which link many entries in a row. It is not safe for concurrent use.
type Linker struct {
	key *Key
	mac hash.Hash
}

// NewLinker returns a Linker under k.
func NewLinker(k *Key) *Linker {
	return &Linker{key: k, mac: hmac.New(sha256.New, k.secret)}
}

// KeyID names the linker's key.
func (l *Linker) KeyID() string { return l.key.ID }

// Link is Key.Link.
func (l *Linker) Link(prev, canon []byte) []byte {
	l.mac.Reset()
	l.mac.Write(prev)
	l.mac.Write(canon)
	return l.mac.Sum(make([]byte, 0, HashSize))
}

// A Signer signs checkpoints with an Ed25519 key named by its id.
type Signer struct {
	ID      string
	private ed25519.PrivateKey
}

// Public returns the key that verifies the signer's signatures.
func (s *Signer) Public() ed25519.PublicKey { return s.private.Public().(ed25519.PublicKey) }

// Keyring is the keys a service holds: the link keys, one of them active
// (new entries are linked under it, older ones verify under theirs), and
// the checkpoint signing keys, one of them active.
type Keyring struct {
	active  *Key
	keys    map[string]*Key
	signer  *Signer
	signers map[string]*Signer
}

// Active returns the key new entries are linked under.
func (r *Keyring) Active() *Key { return r.active }

// Key returns the link key named id.
func (r *Keyring) Key(id string) (*Key, bool) {
	k, ok := r.keys[id]
	return k, ok
}

// Signer returns the key new checkpoints are signed with.
func (r *Keyring) Signer() *Signer { return r.signer }

// PublicKey returns the public key of the signing key named id.
func (r *Keyring) PublicKey(id string) (ed25519.PublicKey, bool) {
	s, ok := r.signers[id]
	if !ok {
		return nil, false
	}
	return s.Public(), true
}

// KeyIDs returns the ids of the link keys, sorted.
func (r *Keyring) KeyIDs() []string { return slices.Sorted(maps.Keys(r.keys)) }

// keyFile is the JSON form of a keyring on disk. Secrets are base64.
type keyFile struct {
	Link []fileKey `json:"link"`
	Sign []fileKey `json:"sign"`
}

type fileKey struct {
	ID     string `json:"id"`
	Secret string `json:"secret"` // link: 32 random bytes; sign: an Ed25519 seed
	Active bool   `json:"active,omitempty"`
}

// keyIDPattern is what a key id may look like: it is stored beside hashes
// and named in reports.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// secretSize is the size of a link secret and of a signing seed.
const secretSize = 32

// ParseKeyring reads a keyring from its JSON form.
func ParseKeyring(data []byte) (*Keyring, error) {
	var f keyFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("audit keys: %w", err)
	}
	r := &Keyring{keys: map[string]*Key{}, signers: map[string]*Signer{}}
	for i, k := range f.Link {
		secret, err := parseSecret(k, fmt.Sprintf("link[%d]", i))
		if err != nil {
			return nil, err
		}
		if _, dup := r.keys[k.ID]; dup {
			return nil, fmt.Errorf("audit keys: link key %q appears twice", k.ID)
		}
		key := &Key{ID: k.ID, secret: secret}
		r.keys[k.ID] = key
		if k.Active {
			if r.active != nil {
				return nil, fmt.Errorf("audit keys: link keys %q and %q are both active", r.active.ID, k.ID)
			}
			r.active = key
		}
	}
	for i, k := range f.Sign {
		seed, err := parseSecret(k, fmt.Sprintf("sign[%d]", i))
		if err != nil {
			return nil, err
		}
		if _, dup := r.signers[k.ID]; dup {
			return nil, fmt.Errorf("audit keys: signing key %q appears twice", k.ID)
		}
		s := &Signer{ID: k.ID, private: ed25519.NewKeyFromSeed(seed)}
		r.signers[k.ID] = s
		if k.Active {
			if r.signer != nil {
				return nil, fmt.Errorf("audit keys: signing keys %q and %q are both active", r.signer.ID, k.ID)
			}
			r.signer = s
		}
	}
	if r.active == nil {
		return nil, errors.New("audit keys: no active link key")
	}
	if r.signer == nil {
		return nil, errors.New("audit keys: no active signing key")
	}
	return r, nil
}

func parseSecret(k fileKey, where string) ([]byte, error) {
	if !keyIDPattern.MatchString(k.ID) {
		return nil, fmt.Errorf("audit keys: %s: id %q must be 1-64 letters, digits, '.', '_' or '-'", where, k.ID)
	}
	secret, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil || len(secret) != secretSize {
		return nil, fmt.Errorf("audit keys: %s (%s): secret must be %d bytes in base64", where, k.ID, secretSize)
	}
	return secret, nil
}

// LoadKeyring reads the keyring file at path. The file holds secrets: it
// must not be readable by other users.
func LoadKeyring(path string) (*Keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("audit keys: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 && fi.Mode().IsRegular() {
		return nil, fmt.Errorf("audit keys: %s is readable by other users (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path) //nolint:gosec // the operator names the key file
	if err != nil {
		return nil, fmt.Errorf("audit keys: %w", err)
	}
	return ParseKeyring(data)
}

// NewKeyFile returns the JSON form of a new keyring: one link key and one
// signing key, both active, named by the ids given.
func NewKeyFile(linkID, signID string) ([]byte, error) {
	f, err := addKeys(keyFile{}, linkID, signID)
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := ParseKeyring(out); err != nil { // an invalid id
		return nil, err
	}
	return out, nil
}

// RotateKeyFile adds a new link key and a new signing key to the JSON form
// of a keyring and makes them active. The old keys stay, inactive: entries
// and checkpoints made under them still verify.
func RotateKeyFile(data []byte, linkID, signID string) ([]byte, error) {
	if _, err := ParseKeyring(data); err != nil {
		return nil, err
	}
	var f keyFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	for i := range f.Link {
		f.Link[i].Active = false
	}
	for i := range f.Sign {
		f.Sign[i].Active = false
	}
	f, err := addKeys(f, linkID, signID)
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := ParseKeyring(out); err != nil { // a repeated id
		return nil, err
	}
	return out, nil
}

func addKeys(f keyFile, linkID, signID string) (keyFile, error) {
	link, err := newSecret()
	if err != nil {
		return f, err
	}
	sign, err := newSecret()
	if err != nil {
		return f, err
	}
	f.Link = append(f.Link, fileKey{ID: linkID, Secret: link, Active: true})
	f.Sign = append(f.Sign, fileKey{ID: signID, Secret: sign, Active: true})
	return f, nil
}

func newSecret() (string, error) {
	var b [secretSize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// WriteKeyFile writes data to path readable by its owner only, replacing
// the file atomically.
func WriteKeyFile(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp) }()
	return os.Rename(tmp, path)
}

// writeTemp writes data, synced, to a new file readable by its owner only
// in path's directory, and returns the file's name.
func writeTemp(path string, data []byte) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".audit-keys-*")
	if err != nil {
		return "", err
	}
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// Tags of the records the link keys seal besides entries: a chain's head
// and registration, and a tenant's change-log head.
const (
	ChainHeadTag  = "crmauthz.chain-head.v1"
	ChainRegTag   = "crmauthz.chain-registration.v1"
	TenantHeadTag = "crmauthz.tenant-head.v1"
	AnchorTag     = "crmauthz.anchor.v1"
	RowsTag       = "crmauthz.change-rows.v1"
	SnapshotTag   = "crmauthz.tenant-snapshot.v1"
)

// MAC returns HMAC-SHA-256 under k of a canonical encoding.
func (k *Key) MAC(canon []byte) []byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write(canon)
	return m.Sum(make([]byte, 0, HashSize))
}

// ChainHead is the canonical content of a decision chain's head: where its
// writer last recorded it. Sealed, it makes a chain's tail impossible to cut
// off unnoticed by moving the head back.
func ChainHead(chainID string, pos int64, hash []byte, seq uint64) []byte {
	var e Encoder
	e.Reset(ChainHeadTag)
	e.String(chainID)
	e.Int(pos)
	e.Raw(hash)
	e.Int(int64(seq))
	return e.Bytes()
}

// ChainRegistration is the canonical content of a chain's registration:
// its place in the order chains were registered in and the seal of the one
// before it, so that deleting a registered chain breaks the order.
func ChainRegistration(chainID string, started time.Time, seq int64, prevSeal []byte) []byte {
	var e Encoder
	e.Reset(ChainRegTag)
	e.String(chainID)
	e.Time(started)
	e.Int(seq)
	e.Raw(prevSeal)
	return e.Bytes()
}

// TenantHead is the canonical content of a tenant's change-log head: its
// revision and that revision's hash. Sealed, it makes lowering a tenant's
// revision (after deleting its latest changes) detectable.
func TenantHead(tenant string, revision int64, hash []byte) []byte {
	var e Encoder
	e.Reset(TenantHeadTag)
	e.String(tenant)
	e.Int(revision)
	e.Raw(hash)
	return e.Bytes()
}

// ChangeRows is the canonical content of the rows a tenant's write left
// behind (store.Rows), which replicas apply instead of reading the tenant
// again. Sealed, they cannot be edited in the database to make a replica
// believe what the tables do not hold.
func ChangeRows(tenant string, revision int64, rows []byte) []byte {
	return tenantRows(RowsTag, tenant, revision, rows)
}

// tenantRows is the canonical content of rows of a tenant at a revision,
// under tag.
func tenantRows(tag, tenant string, revision int64, rows []byte) []byte {
	var e Encoder
	e.Reset(tag)
	e.String(tenant)
	e.Int(revision)
	e.Raw(rows)
	return e.Bytes()
}

// Snapshot is the canonical content of a tenant's whole state at a
// revision (store.EncodeState), from which the change log's rows replay
// the tenant's history. Sealed, it cannot be edited in the database to
// make an explanation after the fact say what the policy did not.
func Snapshot(tenant string, revision int64, rows []byte) []byte {
	return tenantRows(SnapshotTag, tenant, revision, rows)
}

// Anchor is the canonical content of a retention anchor: the last link of
// a chain in a dropped partition, from which the chain verifies onwards.
func Anchor(chainID string, pos int64, hash []byte) []byte {
	var e Encoder
	e.Reset(AnchorTag)
	e.String(chainID)
	e.Int(pos)
	e.Raw(hash)
	return e.Bytes()
}

var (
	processOnce    sync.Once
	processKeyring *Keyring
)

// ProcessKeyring returns fresh random keys made once per process: the
// keys of a log and a store given none, which live no longer than the
// process (the memory store, tests).
func ProcessKeyring() *Keyring {
	processOnce.Do(func() { processKeyring = NewEphemeralKeyring() })
	return processKeyring
}

// NewEphemeralKeyring returns a keyring of fresh random keys, for a log
// that lives no longer than its process (the memory store).
func NewEphemeralKeyring() *Keyring {
	data, err := NewKeyFile("ephemeral", "ephemeral")
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	r, err := ParseKeyring(data)
	if err != nil {
		panic(err)
	}
	return r
}

// NewKeyIDs returns ids for a new link key and signing key: the day they
// were made and a random suffix, so that a rotation never repeats an id.
func NewKeyIDs(now time.Time) (link, sign string) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := now.UTC().Format("20060102") + "-" + base64.RawURLEncoding.EncodeToString(b[:])
	return "link-" + suffix, "sign-" + suffix
}

// CreateKeyFile writes a new keyring to path unless a file is there
// already; it reports whether it wrote one. Two processes racing to
// create the file end up with the same keys: the one that loses reads the
// winner's.
func CreateKeyFile(path string, now time.Time) (bool, error) {
	linkID, signID := NewKeyIDs(now)
	data, err := NewKeyFile(linkID, signID)
	if err != nil {
		return false, err
	}
	tmp, err := writeTemp(path, data)
	if err != nil {
		return false, err
	}
	defer func() { _ = os.Remove(tmp) }()
	// A hard link fails when path exists: no file is ever replaced.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// OpenKeyring loads the keyring at path, creating it with new keys when
// no file is there; created says it did.
func OpenKeyring(path string, now time.Time) (keys *Keyring, created bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if created, err = CreateKeyFile(path, now); err != nil {
			return nil, false, fmt.Errorf("create audit keys: %w", err)
		}
	}
	keys, err = LoadKeyring(path)
	return keys, created, err
}

// SignerIDs returns the ids of the signing keys, sorted.
func (r *Keyring) SignerIDs() []string { return slices.Sorted(maps.Keys(r.signers)) }
