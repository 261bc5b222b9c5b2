package raftfsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// newToken is a token with fresh IDs holding policies, and its secret.
func newToken(policies ...string) (structs.ACLToken, string) {
	accessor, secret := structs.NewTokenIDs()
	return structs.ACLToken{AccessorID: accessor, SecretHash: structs.HashSecret(secret), Policies: policies, CreatedAt: t0}, secret
}

func bootstrapCmd(t testing.TB, reset uint64) ([]byte, string) {
	tok, secret := newToken(structs.ManagementPolicy)
	return encode(t, structs.ACLBootstrapType, &structs.ACLBootstrapRequest{Token: tok, ResetIndex: reset}), secret
}

func policyCmd(t testing.TB, name, rules string) []byte {
	return encode(t, structs.ACLPolicyUpsertType, &structs.ACLPolicyUpsertRequest{Policy: structs.ACLPolicy{Name: name, Rules: rules, CreatedAt: t0, UpdatedAt: t0}})
}

func tokenCmd(t testing.TB, tok structs.ACLToken) []byte {
	return encode(t, structs.ACLTokenCreateType, &structs.ACLTokenCreateRequest{Token: tok})
}

func TestFSM_ACLBootstrapOnce(t *testing.T) {
	f := testFSM(t)
	first, secret := bootstrapCmd(t, 0)
	second, _ := bootstrapCmd(t, 0)
	// Two bootstraps in one batch (a race between two nodes): one wins.
	res := f.ApplyBatch(commandLogs(1, first, second))
	if codeOf(res[0]) != "" || codeOf(res[1]) != structs.CodeConflict {
		t.Fatalf("results %v, %v: want the first stored and the second already_exists", res[0], res[1])
	}
	txn := f.ReadTxn()
	toks, err := txn.Tokens()
	state, done, _ := txn.ACLBootstrap()
	txn.Discard()
	if err != nil || len(toks) != 1 || !toks[0].IsManagement() {
		t.Fatalf("tokens after the race: %v %v", toks, err)
	}
	if !done || state.Index != 1 {
		t.Fatalf("bootstrap state %+v %v, want index 1", state, done)
	}
	txn = f.ReadTxn()
	if tok, err := txn.TokenBySecretHash(structs.HashSecret(secret)); err != nil || tok.AccessorID != toks[0].AccessorID {
		t.Fatalf("token by secret hash: %v %v", tok, err)
	}
	txn.Discard()

	wrong, _ := bootstrapCmd(t, 7)
	right, _ := bootstrapCmd(t, 1)
	again, _ := bootstrapCmd(t, 1)
	res = f.ApplyBatch(commandLogs(3, wrong, right, again))
	if codeOf(res[0]) != structs.CodeConflict || codeOf(res[1]) != "" || codeOf(res[2]) != structs.CodeConflict {
		t.Fatalf("reset results %v / %v / %v: want wrong index refused, right one taken, then used up", res[0], res[1], res[2])
	}
}

func TestFSM_ACLTokensAndPolicies(t *testing.T) {
	f := testFSM(t)
	start := f.Index(ACLTables...)
	tok, _ := newToken("reader")
	res := f.ApplyBatch(commandLogs(1, tokenCmd(t, tok)))
	if codeOf(res[0]) != structs.CodeInvalid {
		t.Fatalf("token naming a missing policy: %v, want invalid_argument", res[0])
	}
	if f.Index(ACLTables...) != start {
		t.Fatal("a refused command moved the ACL index")
	}
	res = f.ApplyBatch(commandLogs(2,
		policyCmd(t, "reader", `model "*" { policy = "read" }`),
		policyCmd(t, "bad", `modle "*" { policy = "read" }`),
		tokenCmd(t, tok),
	))
	if codeOf(res[0]) != "" || codeOf(res[1]) != structs.CodeInvalid || codeOf(res[2]) != "" {
		t.Fatalf("results %v / %v / %v", res[0], res[1], res[2])
	}
	if f.Index(ACLTables...) != 4 {
		t.Fatalf("ACL index %d after ACL writes up to 4", f.Index(ACLTables...))
	}
	dup := tok
	dup.SecretHash = structs.HashSecret("other")
	res = f.ApplyBatch(commandLogs(5, tokenCmd(t, dup), createModel(t, "m", nil)))
	if codeOf(res[0]) != structs.CodeConflict {
		t.Fatalf("a second token with the same accessor: %v", res[0])
	}
	if f.Index(ACLTables...) != 4 {
		t.Fatal("a model write moved the ACL index")
	}
	del := encode(t, structs.ACLTokenDeleteType, &structs.ACLTokenDeleteRequest{AccessorID: tok.AccessorID})
	pdel := encode(t, structs.ACLPolicyDeleteType, &structs.ACLPolicyDeleteRequest{Name: "reader"})
	res = f.ApplyBatch(commandLogs(7, del, del, pdel, pdel))
	if codeOf(res[0]) != "" || codeOf(res[1]) != structs.CodeNotFound || codeOf(res[2]) != "" || codeOf(res[3]) != structs.CodeNotFound {
		t.Fatalf("deletes: %v / %v / %v / %v", res[0], res[1], res[2], res[3])
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	if toks, _ := txn.Tokens(); len(toks) != 0 {
		t.Fatalf("tokens after delete: %v", toks)
	}
	if _, err := txn.Policy("reader"); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("policy after delete: %v", err)
	}
}

func TestFSM_ACLSnapshotHoldsNoSecret(t *testing.T) {
	f := testFSM(t)
	boot, bootSecret := bootstrapCmd(t, 0)
	tok, secret := newToken("reader")
	f.ApplyBatch(commandLogs(1, boot, policyCmd(t, "reader", `node { policy = "read" }`), tokenCmd(t, tok)))
	snap := snapshotBytes(t, f)
	for _, s := range []string{secret, bootSecret} {
		if bytes.Contains(snap, []byte(s)) {
			t.Fatal("the snapshot holds a token secret")
		}
	}
	g := testFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	txn := g.ReadTxn()
	defer txn.Discard()
	toks, _ := txn.Tokens()
	pols, _ := txn.Policies()
	state, done, _ := txn.ACLBootstrap()
	if len(toks) != 2 || len(pols) != 1 || !done || state.Index != 1 {
		t.Fatalf("restored: %d tokens, %d policies, bootstrap %+v %v", len(toks), len(pols), state, done)
	}
	if got, err := txn.TokenBySecretHash(structs.HashSecret(secret)); err != nil || got.AccessorID != tok.AccessorID {
		t.Fatalf("restored token by hash: %v %v", got, err)
	}
	if g.Index(ACLTables...) != g.AppliedIndex() {
		t.Fatalf("ACL index %d after a restore at %d", g.Index(ACLTables...), g.AppliedIndex())
	}
}
