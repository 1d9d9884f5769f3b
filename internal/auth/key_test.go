package auth

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/memory"
)

func TestKeyRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id, key, hash, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if seen[id] || seen[key] {
			t.Fatal("a key repeats")
		}
		seen[id], seen[key] = true, true
		gotID, gotHash, ok := parseKey(key)
		if !ok || gotID != id || !bytes.Equal(gotHash[:], hash) || len(hash) != 32 {
			t.Fatalf("parse %q: %s %x %v", key, gotID, gotHash, ok)
		}
		if strings.Contains(key, string(hash)) {
			t.Fatal("the key holds its hash")
		}
	}
}

// FuzzParseKey: whatever a caller sends, parsing never panics, and accepts
// only the shape crmz_<16 hex>_<43 base64url>.
func FuzzParseKey(f *testing.F) {
	_, key, _, _ := NewKey()
	for _, s := range []string{key, "", "crmz_", "crmz_0123456789abcdef_", key + "x", strings.ToUpper(key), "crmz_0123456789ABCDEF" + key[21:]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, hash, ok := parseKey(s)
		if !ok {
			return
		}
		if !strings.HasPrefix(s, "crmz_"+id+"_") || !ValidCredentialID(id) || hash == [32]byte{} || len(s) != len(key) {
			t.Fatalf("accepted %q as %s", s, id)
		}
	})
}

type recorder struct {
	mu  sync.Mutex
	evs []audit.SecurityEvent
}

func (r *recorder) Record(ev audit.SecurityEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recorder) counts() (events int, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.evs {
		total += ev.Count
	}
	return len(r.evs), total
}

// TestRefusalsAreRateLimited: a flood of refused authentications records
// refusalBurst events a second one by one and the rest as one counted
// summary, so every refusal is counted.
func TestRefusalsAreRateLimited(t *testing.T) {
	rec := &recorder{}
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r := newRefusals(rec, zap.NewNop(), clock)
	for range 1000 {
		r.add(audit.SecurityEvent{Kind: audit.EventAuthnRefused, Reason: "WRONG_SECRET"})
	}
	mu.Lock()
	now = now.Add(1500 * time.Millisecond)
	mu.Unlock()
	r.add(audit.SecurityEvent{Kind: audit.EventAuthnRefused, Reason: "WRONG_SECRET"})
	r.flush()
	events, total := rec.counts()
	if events != refusalBurst+2 || total != 1001 {
		t.Fatalf("%d events counting %d refusals, want %d counting 1001", events, total, refusalBurst+2)
	}
}

// BenchmarkAuthenticate is the cost one call pays to authenticate with a
// cached API key: reading the metadata, parsing the key, hashing its
// secret and comparing the hash in constant time.
func BenchmarkAuthenticate(b *testing.B) {
	st := memory.New(nil)
	id, key, hash, err := NewKey()
	if err != nil {
		b.Fatal(err)
	}
	if err := st.CreateCredential(context.Background(), store.Credential{ID: id, Name: "bench", SecretHash: hash, Scopes: []string{"check"},
		Tenants: []string{"demo"}, CreatedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	a := NewAuthenticator(Options{Enabled: true, Store: st})
	if err := a.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
