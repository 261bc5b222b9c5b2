package raftfsm

import (
	"slices"
	"strings"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// Reads of access control records: policies, tokens, the bootstrap state.

// TokenBySecretHash returns the token whose secret hashes to h, or a
// not_found error.
func (t *Txn) TokenBySecretHash(h string) (*structs.ACLToken, error) {
	if t.err != nil {
		return nil, t.err
	}
	var tok structs.ACLToken
	found, err := getRecord(t.txn, aclTokenKey(h), &tok)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "token not found")
	}
	return utcToken(&tok), nil
}

// Tokens returns every token, sorted by accessor ID.
func (t *Txn) Tokens() ([]*structs.ACLToken, error) {
	if t.err != nil {
		return nil, t.err
	}
	var out []*structs.ACLToken
	err := t.scan(prefixACLToken, "", 0, func(val []byte) error {
		tok := new(structs.ACLToken)
		if err := msgpack.Unmarshal(val, tok); err != nil {
			return err
		}
		out = append(out, utcToken(tok))
		return nil
	}, func() {})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *structs.ACLToken) int { return strings.Compare(a.AccessorID, b.AccessorID) })
	return out, nil
}

// Policy returns the named policy, or a not_found error.
func (t *Txn) Policy(name string) (*structs.ACLPolicy, error) {
	if t.err != nil {
		return nil, t.err
	}
	var p structs.ACLPolicy
	found, err := getRecord(t.txn, aclPolicyKey(name), &p)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, structs.Errorf(structs.CodeNotFound, "policy %q not found", name)
	}
	return utcPolicy(&p), nil
}

// Policies returns every policy in name order.
func (t *Txn) Policies() ([]*structs.ACLPolicy, error) {
	if t.err != nil {
		return nil, t.err
	}
	var out []*structs.ACLPolicy
	err := t.scan(prefixACLPolicy, "", 0, func(val []byte) error {
		p := new(structs.ACLPolicy)
		if err := msgpack.Unmarshal(val, p); err != nil {
			return err
		}
		out = append(out, utcPolicy(p))
		return nil
	}, func() {})
	return out, err
}

// ACLBootstrap returns the bootstrap state; found is false before bootstrap.
func (t *Txn) ACLBootstrap() (state structs.ACLBootstrapState, found bool, err error) {
	if t.err != nil {
		return state, false, t.err
	}
	found, err = getRecord(t.txn, keyACLBootstrap, &state)
	return state, found, err
}
