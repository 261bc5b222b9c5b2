package node

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/node/internal/acl"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// aclBootstrapResetFile, in a node's data dir, holds the reset index that lets
// a bootstrap run again on a cluster whose management token was lost (Nomad's
// procedure): the operator reads the index from the 409 of a refused
// bootstrap and writes it there on the node they send the bootstrap to.
const aclBootstrapResetFile = "acl-bootstrap-reset"

func (a *Agent) aclEndpoint() endpoint {
	k := structs.KindACL
	return endpoint{routes: []route{
		{pattern: "POST /v1/acl/bootstrap", handler: a.handleACLBootstrap, need: needNone},
		{pattern: "GET /v1/acl/policies", handler: a.handleACLPolicyList, kind: k, need: needRead},
		{pattern: "GET /v1/acl/policies/{name}", handler: a.handleACLPolicyGet, kind: k, need: needRead},
		{pattern: "PUT /v1/acl/policies/{name}", handler: a.handleACLPolicyPut, kind: k, need: needWrite},
		{pattern: "DELETE /v1/acl/policies/{name}", handler: a.handleACLPolicyDelete, kind: k, need: needWrite},
		{pattern: "POST /v1/acl/tokens", handler: a.handleACLTokenCreate, kind: k, need: needWrite},
		{pattern: "GET /v1/acl/tokens", handler: a.handleACLTokenList, kind: k, need: needRead},
		{pattern: "DELETE /v1/acl/tokens/{accessor_id}", handler: a.handleACLTokenDelete, kind: k, need: needWrite},
		{pattern: "GET /v1/acl/token/self", handler: a.handleACLTokenSelf, need: needToken},
	}}
}

// newACLResolver builds the token resolver when ACLs are enabled; nil
// otherwise, which turns every check off.
func (a *Agent) newACLResolver() *acl.Resolver {
	if !a.cfg.ACL.Enabled {
		return nil
	}
	return acl.NewResolver(acl.Config{
		DefaultAllow: a.cfg.ACL.DefaultPolicy == "allow",
		TTL:          a.cfg.ACL.TokenTTLCache,
	}, aclStore{a: a, index: a.fsm.IndexFunc(raftfsm.ACLTables...)})
}

// aclStore is the registry as the resolver reads it.
type aclStore struct {
	a     *Agent
	index func() uint64 // of the ACL tables
}

func (s aclStore) ACLIndex() uint64 { return s.index() }

func (s aclStore) Token(secretHash string) (*structs.ACLToken, [][]structs.ACLRule, error) {
	txn := s.a.fsm.ReadTxn()
	defer txn.Discard()
	tok, err := txn.TokenBySecretHash(secretHash)
	if err != nil {
		return nil, nil, err
	}
	var rules [][]structs.ACLRule
	for _, name := range tok.Policies {
		if name == structs.ManagementPolicy {
			continue
		}
		p, err := txn.Policy(name)
		if structs.ErrorCode(err) == structs.CodeNotFound {
			continue // deleted since: the token just loses its rules
		}
		if err != nil {
			return nil, nil, err
		}
		rs, err := structs.ParseRules(p.Rules)
		if err != nil {
			return nil, nil, fmt.Errorf("policy %q: %w", name, err)
		}
		rules = append(rules, rs)
	}
	return tok, rules, nil
}

// tokenJSON is a token as the API shows it (the stored record's JSON never
// includes the secret's hash). SecretID is set only in the answer that
// creates the token.
type tokenJSON struct {
	*structs.ACLToken
	SecretID string `json:"secret_id,omitempty"`
}

func (a *Agent) handleACLBootstrap(w http.ResponseWriter, r *http.Request) {
	reset, err := a.readBootstrapReset()
	if err != nil {
		writeError(w, err)
		return
	}
	accessor, secret := structs.NewTokenIDs()
	now := time.Now().UTC()
	tok := structs.ACLToken{
		AccessorID: accessor, SecretHash: structs.HashSecret(secret),
		Description: "bootstrap token", Policies: []string{structs.ManagementPolicy}, CreatedAt: now,
	}
	var stored structs.ACLToken
	idx, err := a.propose(r.Context(), structs.ACLBootstrapType, &structs.ACLBootstrapRequest{Token: tok, ResetIndex: reset}, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	a.logger.Info("acl bootstrapped", "accessor_id", accessor, "index", idx)
	writeCommitted(w, http.StatusOK, idx, tokenJSON{&stored, secret})
}

// readBootstrapReset reads the reset index file; 0 when there is none.
func (a *Agent) readBootstrapReset() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, aclBootstrapResetFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, structs.Errorf(structs.CodeInternal, "read %s: %v", aclBootstrapResetFile, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, structs.Errorf(structs.CodeInvalid, "%s in the data dir must hold the reset index from the refused bootstrap, not %q", aclBootstrapResetFile, strings.TrimSpace(string(b)))
	}
	return v, nil
}

// policyRequest is the body of PUT /v1/acl/policies/{name}.
type policyRequest struct {
	Description string `json:"description"`
	Rules       string `json:"rules"`
}

func (a *Agent) handleACLPolicyPut(w http.ResponseWriter, r *http.Request) {
	var req policyRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	now := time.Now().UTC()
	p := structs.ACLPolicy{Name: r.PathValue("name"), Description: req.Description, Rules: req.Rules, CreatedAt: now, UpdatedAt: now}
	if err := p.Validate(); err != nil {
		writeError(w, err)
		return
	}
	var stored structs.ACLPolicy
	idx, err := a.propose(r.Context(), structs.ACLPolicyUpsertType, &structs.ACLPolicyUpsertRequest{Policy: p}, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, &stored)
}

func (a *Agent) handleACLPolicyGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) { return txn.Policy(name) })
}

func (a *Agent) handleACLPolicyList(w http.ResponseWriter, r *http.Request) {
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		items, err := txn.Policies()
		if items == nil {
			items = []*structs.ACLPolicy{}
		}
		return map[string]any{"items": items, "next_cursor": ""}, err
	})
}

func (a *Agent) handleACLPolicyDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	if name == structs.ManagementPolicy {
		writeError(w, structs.Errorf(structs.CodeInvalid, "policy %q is built in and cannot be deleted", name))
		return
	}
	a.serveDelete(w, r, structs.ACLPolicyDeleteType, &structs.ACLPolicyDeleteRequest{Name: name}, name)
}

// tokenRequest is the body of POST /v1/acl/tokens.
type tokenRequest struct {
	Description   string   `json:"description"`
	Policies      []string `json:"policies"`
	ExpirationTTL string   `json:"expiration_ttl"`
}

func (a *Agent) handleACLTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	accessor, secret := structs.NewTokenIDs()
	now := time.Now().UTC()
	tok := structs.ACLToken{
		AccessorID: accessor, SecretHash: structs.HashSecret(secret),
		Description: req.Description, Policies: req.Policies, CreatedAt: now,
	}
	if req.ExpirationTTL != "" {
		ttl, err := time.ParseDuration(req.ExpirationTTL)
		if err != nil || ttl <= 0 || ttl > structs.MaxTokenTTL {
			writeError(w, structs.Errorf(structs.CodeInvalid, "expiration_ttl must be a duration from 1s to %s such as \"720h\", not %q", structs.MaxTokenTTL, req.ExpirationTTL))
			return
		}
		tok.ExpirationTime = now.Add(ttl)
	}
	if err := tok.Validate(); err != nil {
		writeError(w, err)
		return
	}
	var stored structs.ACLToken
	idx, err := a.propose(r.Context(), structs.ACLTokenCreateType, &structs.ACLTokenCreateRequest{Token: tok}, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, tokenJSON{&stored, secret})
}

func (a *Agent) handleACLTokenList(w http.ResponseWriter, r *http.Request) {
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		toks, err := txn.Tokens()
		items := make([]tokenJSON, 0, len(toks))
		for _, t := range toks {
			items = append(items, tokenJSON{ACLToken: t})
		}
		return map[string]any{"items": items, "next_cursor": ""}, err
	})
}

func (a *Agent) handleACLTokenSelf(w http.ResponseWriter, r *http.Request) {
	id := acl.FromContext(r.Context())
	if id == nil {
		writeError(w, structs.Errorf(structs.CodeInvalid, "ACLs are disabled on this node: there is no token to show"))
		return
	}
	writeJSON(w, http.StatusOK, tokenJSON{ACLToken: id.Token})
}

func (a *Agent) handleACLTokenDelete(w http.ResponseWriter, r *http.Request) {
	accessor := r.PathValue("accessor_id")
	a.serveDelete(w, r, structs.ACLTokenDeleteType, &structs.ACLTokenDeleteRequest{AccessorID: accessor}, accessor)
}
