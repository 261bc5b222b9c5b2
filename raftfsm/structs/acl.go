package structs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Access control commands (DESIGN.md §8). They sit in RangeServing, where they
// were numbered before ranges were written down. Never renumber; a new one takes
// the next free number of that range.
const (
	// ACLBootstrapType creates the first management token. Apply refuses it
	// once a bootstrap has happened, unless the request carries the reset
	// index the operator wrote on the leader.
	ACLBootstrapType MessageType = 15
	// ACLPolicyUpsertType creates or replaces a policy.
	ACLPolicyUpsertType MessageType = 16
	// ACLPolicyDeleteType removes a policy; tokens naming it lose its rules.
	ACLPolicyDeleteType MessageType = 17
	// ACLTokenCreateType stores a new token (its secret's hash only).
	ACLTokenCreateType MessageType = 18
	// ACLTokenDeleteType removes a token by accessor ID.
	ACLTokenDeleteType MessageType = 19
)

var _ = registerTypes(RangeServing,
	TypeDef{ACLBootstrapType, "acl_bootstrap"},
	TypeDef{ACLPolicyUpsertType, "acl_policy_upsert"},
	TypeDef{ACLPolicyDeleteType, "acl_policy_delete"},
	TypeDef{ACLTokenCreateType, "acl_token_create"},
	TypeDef{ACLTokenDeleteType, "acl_token_delete"},
)

// ManagementPolicy is the built-in policy that allows everything. It cannot be
// written or deleted.
const ManagementPolicy = "management"

// Limits on ACL records.
const (
	MaxPolicyRulesLen  = 64 << 10
	MaxTokenPolicies   = 32
	MaxTokenTTL        = 10 * 365 * 24 * time.Hour
	secretHashHexLen   = 2 * sha256.Size
	accessorIDHexChars = 32
)

// ACLPolicy is a named set of rules (HCL, see ParseRules).
type ACLPolicy struct {
	Name        string    `msgpack:"name" json:"name"`
	Description string    `msgpack:"description" json:"description"`
	Rules       string    `msgpack:"rules" json:"rules"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	UpdatedAt   time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// Validate checks a policy's fields and parses its rules.
func (p *ACLPolicy) Validate() error {
	if err := ValidateName("name", p.Name); err != nil {
		return err
	}
	if p.Name == ManagementPolicy {
		return Errorf(CodeInvalid, "policy %q is built in and cannot be changed", ManagementPolicy)
	}
	if len(p.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is longer than %d bytes", MaxDescriptionLen)
	}
	if len(p.Rules) > MaxPolicyRulesLen {
		return Errorf(CodeInvalid, "rules is longer than %d bytes", MaxPolicyRulesLen)
	}
	if _, err := ParseRules(p.Rules); err != nil {
		return err
	}
	return nil
}

// ACLToken is a token as the registry stores it: the secret itself is never
// stored, only its SHA-256, which is also the token's key.
type ACLToken struct {
	AccessorID  string   `msgpack:"accessor_id" json:"accessor_id"`
	SecretHash  string   `msgpack:"secret_hash" json:"-"`
	Description string   `msgpack:"description" json:"description"`
	Policies    []string `msgpack:"policies" json:"policies"`
	// ExpirationTime is when the token stops working; zero: never.
	ExpirationTime time.Time `msgpack:"expiration_time" json:"expiration_time,omitzero"`
	CreatedAt      time.Time `msgpack:"created_at" json:"created_at"`
	CreateIndex    uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex    uint64    `msgpack:"modify_index" json:"modify_index"`
}

// Validate checks a token's fields (not whether its policies exist, which
// Apply checks against the state).
func (t *ACLToken) Validate() error {
	if !isHex(t.AccessorID, accessorIDHexChars) {
		return Errorf(CodeInvalid, "accessor_id must be %d lowercase hex characters", accessorIDHexChars)
	}
	if !isHex(t.SecretHash, secretHashHexLen) {
		return Errorf(CodeInvalid, "secret hash must be %d lowercase hex characters", secretHashHexLen)
	}
	if len(t.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is longer than %d bytes", MaxDescriptionLen)
	}
	if len(t.Policies) == 0 {
		return Errorf(CodeInvalid, "policies is required: name at least one policy")
	}
	if len(t.Policies) > MaxTokenPolicies {
		return Errorf(CodeInvalid, "policies has %d entries, more than %d", len(t.Policies), MaxTokenPolicies)
	}
	for i, p := range t.Policies {
		if err := ValidateName(fmt.Sprintf("policies[%d]", i), p); err != nil {
			return err
		}
		if slices.Contains(t.Policies[:i], p) {
			return Errorf(CodeInvalid, "policies names %q twice", p)
		}
	}
	return nil
}

// IsManagement reports whether the token holds the built-in management policy.
func (t *ACLToken) IsManagement() bool { return slices.Contains(t.Policies, ManagementPolicy) }

// Expired reports whether the token has expired at now.
func (t *ACLToken) Expired(now time.Time) bool {
	return !t.ExpirationTime.IsZero() && !now.Before(t.ExpirationTime)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// HashSecret is the stored form of a token secret: hex SHA-256. Secrets are
// 128 random bits, so a fast hash is enough; no salt or stretching is needed
// against guessing.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewTokenIDs returns a fresh accessor ID and secret: 128 random bits each.
// The secret is shaped like a UUID, as Nomad's and Consul's are.
func NewTokenIDs() (accessor, secret string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("structs: no randomness: " + err.Error())
	}
	accessor = hex.EncodeToString(b[:16])
	s := hex.EncodeToString(b[16:])
	secret = s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
	return accessor, secret
}

// ACLBootstrapState records that the cluster was bootstrapped, and at which
// index; that index is what an operator writes into the reset file.
type ACLBootstrapState struct {
	Index uint64 `msgpack:"index" json:"index"`
}

// ACLBootstrapRequest creates the first management token. ResetIndex, when
// not zero, must equal the stored bootstrap index to bootstrap again.
type ACLBootstrapRequest struct {
	Token      ACLToken `msgpack:"token"`
	ResetIndex uint64   `msgpack:"reset_index"`
}

// ACLPolicyUpsertRequest creates or replaces a policy.
type ACLPolicyUpsertRequest struct {
	Policy ACLPolicy `msgpack:"policy"`
}

// ACLPolicyDeleteRequest removes a policy.
type ACLPolicyDeleteRequest struct {
	Name string `msgpack:"name"`
}

// ACLTokenCreateRequest stores a new token.
type ACLTokenCreateRequest struct {
	Token ACLToken `msgpack:"token"`
}

// ACLTokenDeleteRequest removes a token.
type ACLTokenDeleteRequest struct {
	AccessorID string `msgpack:"accessor_id"`
}
