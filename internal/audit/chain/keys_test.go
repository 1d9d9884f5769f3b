package chain

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestKeyRotation rotates a keyring: new entries link under the new key,
// entries linked under the old one still verify, and a checkpoint signed
// before the rotation still verifies under the old signing key.
func TestKeyRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	created, err := CreateKeyFile(path, time.Now())
	if err != nil || !created {
		t.Fatalf("create: %v, %v", created, err)
	}
	if again, err := CreateKeyFile(path, time.Now()); err != nil || again {
		t.Fatalf("a second create replaced the file: %v, %v", again, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	old, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	canon := []byte("entry")
	oldHash := old.Active().Link(nil, canon)
	cp, err := old.Signer().Sign(time.Now(), []Head{{Chain: "c", Position: 3, Hash: oldHash}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	data, _ := os.ReadFile(path)
	rotated, err := RotateKeyFile(data, "link-2", "sign-2")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseKeyring(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if r.Active().ID != "link-2" || r.Signer().ID != "sign-2" {
		t.Fatalf("active keys %s, %s after rotation", r.Active().ID, r.Signer().ID)
	}
	if bytes.Equal(r.Active().Link(nil, canon), oldHash) {
		t.Error("the new key links as the old one")
	}
	k, ok := r.Key(old.Active().ID)
	if !ok || !bytes.Equal(k.Link(nil, canon), oldHash) {
		t.Error("an entry linked under the old key no longer verifies")
	}
	pub, ok := r.PublicKey(cp.KeyID)
	parsed, err := ParseCheckpoint(cp.Content, cp.Signature)
	if !ok || err != nil || !parsed.Verify(pub) || len(parsed.Decisions) != 1 || !bytes.Equal(parsed.Decisions[0].Hash, oldHash) {
		t.Fatalf("old checkpoint after rotation: %v, %v", parsed, err)
	}
	if _, err := RotateKeyFile(rotated, "link-2", "sign-3"); err == nil {
		t.Error("a rotation repeating a key id was accepted")
	}
}

// TestCheckpointTampering changes a signed checkpoint byte by byte: no
// change both parses and verifies.
func TestCheckpointTampering(t *testing.T) {
	r := NewEphemeralKeyring()
	cp, err := r.Signer().Sign(time.Now(), []Head{{Chain: "a", Position: 9, Hash: bytes.Repeat([]byte{1}, 32)}},
		[]Head{{Chain: "demo", Position: 4, Hash: bytes.Repeat([]byte{2}, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	pub := r.Signer().Public()
	for i := range cp.Content {
		forged := bytes.Clone(cp.Content)
		forged[i] ^= 1
		if c, err := ParseCheckpoint(forged, cp.Signature); err == nil && c.Verify(pub) {
			t.Fatalf("byte %d changed: still verifies", i)
		}
	}
	if _, err := ParseKeyring([]byte(`{"link":[{"id":"a","secret":"c2hvcnQ=","active":true}]}`)); err == nil {
		t.Error("a short secret was accepted")
	}
}
