package raftfsm

import (
	"fmt"
	"strings"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// ACL records (DESIGN.md §8): policies by name, tokens by the hash of their
// secret (so that resolving a request's token is one read), and the bootstrap
// state. Listing or deleting a token by accessor scans the tokens, which are
// few and changed rarely.
const (
	prefixACLPolicy    = "acl/p/" // acl/p/<name>        -> structs.ACLPolicy
	prefixACLToken     = "acl/t/" // acl/t/<secret hash> -> structs.ACLToken
	keyACLBootstrap    = "acl/bootstrap"
	prefixACLBootstrap = keyACLBootstrap // a prefix holding exactly one key
)

func aclPolicyKey(name string) string      { return prefixACLPolicy + name }
func aclTokenKey(secretHash string) string { return prefixACLToken + secretHash }

// Access control commands sit in the serving range, where they were numbered.
var _ = registerCommands(structs.RangeServing,
	handler{structs.ACLBootstrapType, applyACLBootstrap},
	handler{structs.ACLPolicyUpsertType, applyACLPolicyUpsert},
	handler{structs.ACLPolicyDeleteType, applyACLPolicyDelete},
	handler{structs.ACLTokenCreateType, applyACLTokenCreate},
	handler{structs.ACLTokenDeleteType, applyACLTokenDelete},
)

func utcToken(t *structs.ACLToken) *structs.ACLToken {
	t.CreatedAt, t.ExpirationTime = t.CreatedAt.UTC(), t.ExpirationTime.UTC()
	return t
}

func utcPolicy(p *structs.ACLPolicy) *structs.ACLPolicy {
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p
}

// checkTokenPolicies refuses a token naming a policy that does not exist.
func checkTokenPolicies(tx *applyTxn, t *structs.ACLToken) error {
	for _, name := range t.Policies {
		if name == structs.ManagementPolicy {
			continue
		}
		var p structs.ACLPolicy
		found, err := tx.get(aclPolicyKey(name), &p)
		if err != nil {
			return err
		}
		if !found {
			return structs.Errorf(structs.CodeInvalid, "policies: policy %q does not exist", name)
		}
	}
	return nil
}

// putNewToken stores a token whose accessor and secret are both unused.
func putNewToken(tx *applyTxn, t *structs.ACLToken) error {
	var old structs.ACLToken
	found, err := tx.get(aclTokenKey(t.SecretHash), &old)
	if err != nil {
		return err
	}
	if found {
		return structs.Errorf(structs.CodeConflict, "a token with this secret already exists")
	}
	if _, _, found, err := tx.tokenByAccessor(t.AccessorID); err != nil {
		return err
	} else if found {
		return structs.Errorf(structs.CodeConflict, "token %s already exists", t.AccessorID)
	}
	t.CreateIndex, t.ModifyIndex = tx.index, tx.index
	return tx.put(aclTokenKey(t.SecretHash), t)
}

func applyACLBootstrap(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ACLBootstrapRequest
	if err := decodeBody(structs.ACLBootstrapType, body, &req); err != nil {
		return nil, err
	}
	t := req.Token
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if len(t.Policies) != 1 || !t.IsManagement() {
		return nil, structs.Errorf(structs.CodeInvalid, "the bootstrap token holds exactly the %q policy", structs.ManagementPolicy)
	}
	var state structs.ACLBootstrapState
	done, err := tx.get(keyACLBootstrap, &state)
	if err != nil {
		return nil, err
	}
	if done && req.ResetIndex != state.Index {
		return nil, structs.Errorf(structs.CodeConflict, "ACL bootstrap already done (reset index %d)", state.Index)
	}
	if err := putNewToken(tx, &t); err != nil {
		return nil, err
	}
	if err := tx.put(keyACLBootstrap, &structs.ACLBootstrapState{Index: tx.index}); err != nil {
		return nil, err
	}
	return utcToken(&t), nil
}

func applyACLPolicyUpsert(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ACLPolicyUpsertRequest
	if err := decodeBody(structs.ACLPolicyUpsertType, body, &req); err != nil {
		return nil, err
	}
	p := req.Policy
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var old structs.ACLPolicy
	found, err := tx.get(aclPolicyKey(p.Name), &old)
	if err != nil {
		return nil, err
	}
	p.CreateIndex, p.ModifyIndex = tx.index, tx.index
	if found {
		p.CreateIndex, p.CreatedAt = old.CreateIndex, old.CreatedAt
	}
	if err := tx.put(aclPolicyKey(p.Name), &p); err != nil {
		return nil, err
	}
	return utcPolicy(&p), nil
}

func applyACLPolicyDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ACLPolicyDeleteRequest
	if err := decodeBody(structs.ACLPolicyDeleteType, body, &req); err != nil {
		return nil, err
	}
	if err := structs.ValidateName("name", req.Name); err != nil {
		return nil, err
	}
	var old structs.ACLPolicy
	found, err := tx.get(aclPolicyKey(req.Name), &old)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "policy %q not found", req.Name)
	}
	tx.del(aclPolicyKey(req.Name))
	return nil, nil
}

func applyACLTokenCreate(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ACLTokenCreateRequest
	if err := decodeBody(structs.ACLTokenCreateType, body, &req); err != nil {
		return nil, err
	}
	t := req.Token
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if err := checkTokenPolicies(tx, &t); err != nil {
		return nil, err
	}
	if err := putNewToken(tx, &t); err != nil {
		return nil, err
	}
	return utcToken(&t), nil
}

func applyACLTokenDelete(tx *applyTxn, body []byte) (interface{}, error) {
	var req structs.ACLTokenDeleteRequest
	if err := decodeBody(structs.ACLTokenDeleteType, body, &req); err != nil {
		return nil, err
	}
	key, _, found, err := tx.tokenByAccessor(req.AccessorID)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "token %q not found", req.AccessorID)
	}
	tx.del(key)
	return nil, nil
}

// tokenByAccessor finds a token by scanning the token records.
func (t *applyTxn) tokenByAccessor(accessor string) (key string, tok *structs.ACLToken, found bool, err error) {
	if accessor == "" {
		return "", nil, false, nil
	}
	for _, k := range t.keysUnder(prefixACLToken) {
		var cur structs.ACLToken
		ok, err := t.get(k, &cur)
		if err != nil {
			return "", nil, false, err
		}
		if ok && cur.AccessorID == accessor {
			return k, &cur, true, nil
		}
	}
	return "", nil, false, nil
}

// ACL entities for snapshots (entities.go lists them in order).
func aclPolicyKeyOf(raw []byte) (string, error) {
	var p structs.ACLPolicy
	if err := structs.Decode(raw, &p); err != nil {
		return "", err
	}
	if p.Name == "" {
		return "", fmt.Errorf("policy record without name")
	}
	return aclPolicyKey(p.Name), nil
}

func aclTokenKeyOf(raw []byte) (string, error) {
	var t structs.ACLToken
	if err := structs.Decode(raw, &t); err != nil {
		return "", err
	}
	if t.SecretHash == "" || strings.Contains(t.SecretHash, "/") {
		return "", fmt.Errorf("token record without a secret hash")
	}
	return aclTokenKey(t.SecretHash), nil
}

func aclBootstrapKeyOf(raw []byte) (string, error) {
	var s structs.ACLBootstrapState
	if err := structs.Decode(raw, &s); err != nil {
		return "", err
	}
	return keyACLBootstrap, nil
}

func validateACLPolicyRecord(raw []byte) error {
	var p structs.ACLPolicy
	if err := structs.Decode(raw, &p); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return recordError(p.Name, err)
	}
	return nil
}

// validateACLTokenRecord does not check that the token's policies exist:
// deleting a policy leaves the tokens that name it.
func validateACLTokenRecord(raw []byte) error {
	var t structs.ACLToken
	if err := structs.Decode(raw, &t); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return recordError(t.AccessorID, err)
	}
	return nil
}

func validateACLBootstrapRecord(raw []byte) error {
	var s structs.ACLBootstrapState
	if err := structs.Decode(raw, &s); err != nil {
		return err
	}
	if s.Index == 0 {
		return recordError("bootstrap", structs.Errorf(structs.CodeInvalid, "index is 0; a bootstrap is recorded at the index that applied it"))
	}
	return nil
}
