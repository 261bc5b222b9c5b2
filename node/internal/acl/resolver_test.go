package acl

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// memStore is an in-memory Store: tokens by secret hash, rules by policy.
type memStore struct {
	mu       sync.Mutex
	index    atomic.Uint64
	tokens   map[string]*structs.ACLToken
	policies map[string][]structs.ACLRule
	reads    atomic.Int64
}

func newMemStore() *memStore {
	return &memStore{tokens: map[string]*structs.ACLToken{}, policies: map[string][]structs.ACLRule{}}
}

func (s *memStore) ACLIndex() uint64 { return s.index.Load() }

func (s *memStore) Token(hash string) (*structs.ACLToken, [][]structs.ACLRule, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[hash]
	if !ok {
		return nil, nil, structs.Errorf(structs.CodeNotFound, "token not found")
	}
	var rules [][]structs.ACLRule
	for _, p := range t.Policies {
		if rs, ok := s.policies[p]; ok {
			rules = append(rules, rs)
		}
	}
	cp := *t
	return &cp, rules, nil
}

// add stores a token with the given policies and returns its secret.
func (s *memStore) add(t *testing.T, exp time.Time, policies ...string) string {
	t.Helper()
	accessor, secret := structs.NewTokenIDs()
	s.mu.Lock()
	s.tokens[structs.HashSecret(secret)] = &structs.ACLToken{
		AccessorID: accessor, SecretHash: structs.HashSecret(secret), Policies: policies, ExpirationTime: exp,
	}
	s.mu.Unlock()
	s.index.Add(1)
	return secret
}

func (s *memStore) setPolicy(t *testing.T, name, src string) {
	t.Helper()
	rules, err := structs.ParseRules(src)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.policies[name] = rules
	s.mu.Unlock()
	s.index.Add(1)
}

func (s *memStore) remove(secret string) {
	s.mu.Lock()
	delete(s.tokens, structs.HashSecret(secret))
	s.mu.Unlock()
	s.index.Add(1)
}

func TestResolver_Resolve(t *testing.T) {
	s := newMemStore()
	s.setPolicy(t, "reader", `model "*" { policy = "read" }`)
	secret := s.add(t, time.Time{}, "reader")
	mgmt := s.add(t, time.Time{}, structs.ManagementPolicy)
	r := NewResolver(Config{}, s)

	tests := []struct {
		name, secret string
		wantCode     string
	}{
		{"empty", "", structs.CodeUnauthenticated},
		{"unknown", "nope", structs.CodeUnauthenticated},
		{"one char changed", secret[:len(secret)-1] + "x", structs.CodeUnauthenticated},
		{"valid", secret, ""},
		{"management", mgmt, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := r.Resolve(tt.secret)
			if tt.wantCode != "" {
				if structs.ErrorCode(err) != tt.wantCode || id != nil {
					t.Fatalf("Resolve = %v, %v; want code %s", id, err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	id, _ := r.Resolve(secret)
	if !id.Allowed(structs.KindModel, "m", structs.AccessRead) || id.Allowed(structs.KindModel, "m", structs.AccessWrite) {
		t.Fatal("reader token: want model read and not write")
	}
	err := id.Check(structs.KindDeployment, "fraud-a", structs.AccessWrite)
	if structs.ErrorCode(err) != structs.CodePermissionDenied || err.Error() != `token lacks "write" on deployment "fraud-a"` {
		t.Fatalf("Check = %v", err)
	}
	if err := id.Check(structs.KindNode, "", structs.AccessRead); err == nil || err.Error() != `token lacks "read" on node` {
		t.Fatalf("Check on an unnamed kind = %v", err)
	}
	m, _ := r.Resolve(mgmt)
	if !m.Allowed(structs.KindExec, "", structs.AccessAllow) || !m.Allowed(structs.KindOperator, "", structs.AccessWrite) {
		t.Fatal("management token: want everything")
	}
}

func TestResolver_CacheFollowsTheIndex(t *testing.T) {
	s := newMemStore()
	s.setPolicy(t, "p", `model "*" { policy = "read" }`)
	secret := s.add(t, time.Time{}, "p")
	r := NewResolver(Config{TTL: time.Hour}, s)
	for range 10 {
		if _, err := r.Resolve(secret); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.reads.Load(); n != 1 {
		t.Fatalf("%d store reads for 10 resolves of one token, want 1 (cached)", n)
	}
	// A policy change moves the index: the next resolve sees the new rules.
	s.setPolicy(t, "p", `model "*" { policy = "write" }`)
	id, err := r.Resolve(secret)
	if err != nil || !id.Allowed(structs.KindModel, "x", structs.AccessWrite) {
		t.Fatalf("after a policy change: %v, write=%v", err, err == nil && id.Allowed(structs.KindModel, "x", structs.AccessWrite))
	}
	// A deleted token stops at once.
	s.remove(secret)
	if _, err := r.Resolve(secret); err != ErrUnknownToken {
		t.Fatalf("deleted token: %v, want ErrUnknownToken", err)
	}
}

func TestResolver_TTLAndExpiry(t *testing.T) {
	s := newMemStore()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	r := NewResolver(Config{TTL: time.Minute, Now: func() time.Time { return time.Unix(0, clock.Load()) }}, s)
	secret := s.add(t, now.Add(90*time.Second), structs.ManagementPolicy)
	if _, err := r.Resolve(secret); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(61 * time.Second))
	if _, err := r.Resolve(secret); err != nil {
		t.Fatal(err)
	}
	if n := s.reads.Load(); n != 2 {
		t.Fatalf("%d store reads, want 2: the entry should age out after the TTL", n)
	}
	clock.Add(int64(30 * time.Second))
	if _, err := r.Resolve(secret); err != ErrExpired {
		t.Fatalf("past its expiration: %v, want ErrExpired", err)
	}
}

func TestResolver_BoundedCache(t *testing.T) {
	s := newMemStore()
	r := NewResolver(Config{MaxEntries: 4}, s)
	var secrets []string
	for range 10 {
		secrets = append(secrets, s.add(t, time.Time{}, structs.ManagementPolicy))
	}
	for _, sec := range secrets {
		if _, err := r.Resolve(sec); err != nil {
			t.Fatal(err)
		}
	}
	n := len(r.cache.Load().entries)
	if n > 4 {
		t.Fatalf("cache holds %d entries, bound is 4", n)
	}
}

func TestIdentity_Context(t *testing.T) {
	if FromContext(context.Background()) != nil {
		t.Fatal("identity in an empty context")
	}
	id := &Identity{Token: &structs.ACLToken{AccessorID: "a"}}
	if got := FromContext(WithIdentity(context.Background(), id)); got != id {
		t.Fatalf("FromContext = %v", got)
	}
}

// BenchmarkResolver_Cached is the per-request cost of a cached token: what
// ACLs add to a prediction.
func BenchmarkResolver_Cached(b *testing.B) {
	s := newMemStore()
	_, secret := structs.NewTokenIDs()
	s.tokens[structs.HashSecret(secret)] = &structs.ACLToken{SecretHash: structs.HashSecret(secret), Policies: []string{"p"}}
	rules, _ := structs.ParseRules(`predict "fraud-*" { policy = "allow" }`)
	s.policies["p"] = rules
	r := NewResolver(Config{}, s)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id, err := r.Resolve(secret)
			if err != nil || !id.Allowed(structs.KindPredict, "fraud-a", structs.AccessAllow) {
				b.Fatal("not allowed")
			}
		}
	})
}
