package acl

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Errors of Resolve. They carry the unauthenticated code, which the HTTP
// layer answers with 401.
var (
	ErrNoToken      = structs.Errorf(structs.CodeUnauthenticated, "acl: a token is required: send it in X-Kiln-Token or Authorization: Bearer")
	ErrUnknownToken = structs.Errorf(structs.CodeUnauthenticated, "acl: token not found")
	ErrExpired      = structs.Errorf(structs.CodeUnauthenticated, "acl: token expired")
)

// Store is what the resolver reads: the registry's ACL change index and
// records. node's registry view satisfies it.
type Store interface {
	// ACLIndex moves whenever an ACL record changes.
	ACLIndex() uint64
	// Token returns the token stored under the hash of its secret and the
	// parsed rules of each of its policies that exists (management aside).
	// A missing token is a *structs.CodedError with code not_found.
	Token(secretHash string) (*structs.ACLToken, [][]structs.ACLRule, error)
}

// Config configures a Resolver.
type Config struct {
	// DefaultAllow grants what no rule matches (acl.default_policy = "allow").
	DefaultAllow bool
	// TTL bounds the age of a cached identity.
	TTL time.Duration
	// MaxEntries bounds the cache; a full cache is emptied.
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Identity is a resolved, valid token.
type Identity struct {
	Token   *structs.ACLToken
	decider *structs.ACLDecider
	// secret is what the caller presented: a write forwarded to the leader
	// carries it, so that the leader checks the token again (node/acl_forward.go).
	secret string
}

// Secret is the token's secret, as the caller presented it.
func (id *Identity) Secret() string { return id.secret }

// AccessorID is the token's public ID, the one to log.
func (id *Identity) AccessorID() string { return id.Token.AccessorID }

// Allowed reports whether the token grants want on the named resource.
func (id *Identity) Allowed(kind structs.ACLKind, name string, want structs.ACLAccess) bool {
	return id.decider.Allowed(kind, name, want)
}

// Check returns nil when the token grants want on the resource, and otherwise
// a permission_denied error naming what is missing.
func (id *Identity) Check(kind structs.ACLKind, name string, want structs.ACLAccess) error {
	if id.Allowed(kind, name, want) {
		return nil
	}
	return Denied(kind, name, want)
}

// Denied is the error for a missing right: token lacks "write" on deployment "fraud-a".
func Denied(kind structs.ACLKind, name string, want structs.ACLAccess) error {
	if kind.Named() {
		return structs.Errorf(structs.CodePermissionDenied, "token lacks %q on %s %q", want.String(), kind, name)
	}
	return structs.Errorf(structs.CodePermissionDenied, "token lacks %q on %s", want.String(), kind)
}

type entry struct {
	id   *Identity
	hash string
	at   time.Time
}

// Resolver turns secrets into identities, with a cache.
//
// The cache is copy-on-write: a request reads the current table through one
// atomic load and no lock, and a miss (rare: a new token, or the first
// request after an ACL change) installs a new table with the entry added.
type Resolver struct {
	cfg   Config
	store Store

	cache atomic.Pointer[cacheTable]
	mu    sync.Mutex // serialises the writers of cache
}

// cacheTable is one immutable version of the cache.
type cacheTable struct {
	index   uint64 // the ACL index the entries reflect
	entries map[[sha256.Size]byte]entry
}

// NewResolver builds a resolver over store.
func NewResolver(cfg Config, store Store) *Resolver {
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Resolver{cfg: cfg, store: store}
	r.cache.Store(&cacheTable{entries: map[[sha256.Size]byte]entry{}})
	return r
}

// Resolve returns the identity of a token secret, or an unauthenticated
// error: no secret, an unknown one, or an expired token.
func (r *Resolver) Resolve(secret string) (*Identity, error) {
	if secret == "" {
		return nil, ErrNoToken
	}
	sum := sha256.Sum256([]byte(secret))
	index := r.store.ACLIndex() // before the read, so a later change is never missed
	now := r.cfg.Now()
	table := r.cache.Load()
	e, ok := table.entries[sum]
	fresh := ok && table.index == index && now.Sub(e.at) < r.cfg.TTL
	if !fresh {
		var err error
		if e, err = r.load(sum, secret); err != nil {
			return nil, err
		}
		r.remember(sum, index, e)
	}
	if e.id.Token.Expired(now) {
		return nil, ErrExpired
	}
	return e.id, nil
}

// ResolveHash returns the identity of the token whose secret has the given
// hash (hex sha256): the rights a pipeline applied with that token keeps.
// The identity carries no secret, so it cannot be forwarded as a caller.
func (r *Resolver) ResolveHash(hash string) (*Identity, error) {
	raw, err := hex.DecodeString(hash)
	if err != nil || len(raw) != sha256.Size {
		return nil, ErrUnknownToken
	}
	var sum [sha256.Size]byte
	copy(sum[:], raw)
	e, err := r.load(sum, "")
	if err != nil {
		return nil, err
	}
	if e.id.Token.Expired(r.cfg.Now()) {
		return nil, ErrExpired
	}
	return e.id, nil
}

func (r *Resolver) load(sum [sha256.Size]byte, secret string) (entry, error) {
	hash := hex.EncodeToString(sum[:])
	tok, rules, err := r.store.Token(hash)
	if err != nil {
		if structs.ErrorCode(err) == structs.CodeNotFound {
			return entry{}, ErrUnknownToken
		}
		return entry{}, fmt.Errorf("acl: resolve token: %w", err)
	}
	// The record was found by its key; comparing the stored hash again, in
	// constant time, keeps the check independent of how the store looks up.
	if subtle.ConstantTimeCompare([]byte(tok.SecretHash), []byte(hash)) != 1 {
		return entry{}, ErrUnknownToken
	}
	d := structs.NewACLDecider(r.cfg.DefaultAllow, rules...)
	d.Management = tok.IsManagement()
	return entry{id: &Identity{Token: tok, decider: d, secret: secret}, hash: hash, at: r.cfg.Now()}, nil
}

func (r *Resolver) remember(sum [sha256.Size]byte, index uint64, e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cache.Load()
	if index < old.index {
		return // resolved against an older state than the cache holds
	}
	next := &cacheTable{index: index, entries: make(map[[sha256.Size]byte]entry, len(old.entries)+1)}
	if index == old.index && len(old.entries) < r.cfg.MaxEntries {
		for k, v := range old.entries {
			next.entries[k] = v
		}
	}
	next.entries[sum] = e
	r.cache.Store(next)
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity in ctx, or nil when the request was not
// authenticated (ACLs disabled).
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}
