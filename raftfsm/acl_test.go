package raftfsm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// These tests build on the helpers of acl_apply_test.go (newToken,
// bootstrapCmd, policyCmd, tokenCmd) and helpers_test.go.

// aclState is every ACL record an FSM holds, for comparisons.
type aclState struct {
	Policies []*structs.ACLPolicy
	Tokens   []*structs.ACLToken
	Boot     structs.ACLBootstrapState
	Booted   bool
}

func readACLState(t testing.TB, f *FSM) aclState {
	t.Helper()
	txn := f.ReadTxn()
	defer txn.Discard()
	pols, err := txn.Policies()
	if err != nil {
		t.Fatalf("Policies: %v", err)
	}
	toks, err := txn.Tokens()
	if err != nil {
		t.Fatalf("Tokens: %v", err)
	}
	boot, booted, err := txn.ACLBootstrap()
	if err != nil {
		t.Fatalf("ACLBootstrap: %v", err)
	}
	return aclState{Policies: pols, Tokens: toks, Boot: boot, Booted: booted}
}

func assertSameACLState(t testing.TB, want, got aclState) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		w, _ := json.MarshalIndent(want, "", " ")
		g, _ := json.MarshalIndent(got, "", " ")
		t.Fatalf("ACL state differs\nwant %s\ngot  %s", w, g)
	}
}

func accessors(toks []*structs.ACLToken) []string {
	out := make([]string, len(toks))
	for i, tok := range toks {
		out[i] = tok.AccessorID
	}
	return out
}

// tokenBySecret looks a token up the way a request is authenticated.
func tokenBySecret(t testing.TB, f *FSM, secret string) (*structs.ACLToken, error) {
	t.Helper()
	txn := f.ReadTxn()
	defer txn.Discard()
	return txn.TokenBySecretHash(structs.HashSecret(secret))
}

func bootstrapTokenCmd(t testing.TB, tok structs.ACLToken, reset uint64) []byte {
	return encode(t, structs.ACLBootstrapType, &structs.ACLBootstrapRequest{Token: tok, ResetIndex: reset})
}

func tokenDeleteCmd(t testing.TB, accessor string) []byte {
	return encode(t, structs.ACLTokenDeleteType, &structs.ACLTokenDeleteRequest{AccessorID: accessor})
}

func policyDeleteCmd(t testing.TB, name string) []byte {
	return encode(t, structs.ACLPolicyDeleteType, &structs.ACLPolicyDeleteRequest{Name: name})
}

func TestFSM_ACLBootstrapOnlyOnce(t *testing.T) {
	f := testFSM(t)
	if st := readACLState(t, f); st.Booted || len(st.Tokens) != 0 || len(st.Policies) != 0 {
		t.Fatalf("a fresh FSM holds ACL state: %+v", st)
	}
	tok, secret := newToken(structs.ManagementPolicy)
	res := f.ApplyBatch(commandLogs(1, bootstrapTokenCmd(t, tok, 0)))
	stored, ok := res[0].(*structs.ACLToken)
	if !ok {
		t.Fatalf("bootstrap result %#v, want the token", res[0])
	}
	if stored.AccessorID != tok.AccessorID || stored.CreateIndex != 1 || stored.ModifyIndex != 1 || !stored.IsManagement() {
		t.Fatalf("bootstrap stored %+v", stored)
	}
	after := readACLState(t, f)
	if !after.Booted || after.Boot.Index != 1 || len(after.Tokens) != 1 {
		t.Fatalf("after bootstrap: %+v", after)
	}
	if got, err := tokenBySecret(t, f, secret); err != nil || got.AccessorID != tok.AccessorID {
		t.Fatalf("bootstrap token by secret: %v %v", got, err)
	}

	// Every later bootstrap without the reset index is refused and changes nothing.
	for i, reset := range []uint64{0, 0, 2} {
		index := uint64(2 + i)
		again, againSecret := newToken(structs.ManagementPolicy)
		res := f.ApplyBatch(commandLogs(index, bootstrapTokenCmd(t, again, reset)))
		if codeOf(res[0]) != structs.CodeConflict {
			t.Fatalf("bootstrap at %d (reset %d): %#v, want already_exists", index, reset, res[0])
		}
		if msg := res[0].(*structs.CodedError).Message; !strings.Contains(msg, "already done") || !strings.Contains(msg, "reset index 1") {
			t.Fatalf("conflict message %q does not give the reset index", msg)
		}
		assertSameACLState(t, after, readACLState(t, f))
		if _, err := tokenBySecret(t, f, againSecret); structs.ErrorCode(err) != structs.CodeNotFound {
			t.Fatalf("a refused bootstrap's token resolves: %v", err)
		}
		if f.Index(ACLTables...) != 1 || f.AppliedIndex() != index {
			t.Fatalf("ACL index %d, applied %d after a refused bootstrap at %d", f.Index(ACLTables...), f.AppliedIndex(), index)
		}
	}
}

func TestFSM_ACLBootstrapRefusesBadTokens(t *testing.T) {
	existing, _ := newToken("readers")
	tests := []struct {
		name string
		tok  func() structs.ACLToken
		code string
		want string
	}{
		{"not management", func() structs.ACLToken { tok, _ := newToken("readers"); return tok }, structs.CodeInvalid, `exactly the "management" policy`},
		{"management and more", func() structs.ACLToken {
			tok, _ := newToken(structs.ManagementPolicy, "readers")
			return tok
		}, structs.CodeInvalid, `exactly the "management" policy`},
		{"invalid accessor", func() structs.ACLToken {
			tok, _ := newToken(structs.ManagementPolicy)
			tok.AccessorID = "x"
			return tok
		}, structs.CodeInvalid, "accessor_id"},
		{"plaintext secret", func() structs.ACLToken {
			tok, secret := newToken(structs.ManagementPolicy)
			tok.SecretHash = secret
			return tok
		}, structs.CodeInvalid, "secret hash"},
		{"secret of an existing token", func() structs.ACLToken {
			tok, _ := newToken(structs.ManagementPolicy)
			tok.SecretHash = existing.SecretHash
			return tok
		}, structs.CodeConflict, "secret already exists"},
		{"accessor of an existing token", func() structs.ACLToken {
			tok, _ := newToken(structs.ManagementPolicy)
			tok.AccessorID = existing.AccessorID
			return tok
		}, structs.CodeConflict, "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFSM(t)
			mustApply(t, f, 1, policyCmd(t, "readers", `model "*" { policy = "read" }`), tokenCmd(t, existing))
			before := readACLState(t, f)
			res := f.ApplyBatch(commandLogs(3, bootstrapTokenCmd(t, tt.tok(), 0)))
			if codeOf(res[0]) != tt.code || !strings.Contains(res[0].(error).Error(), tt.want) {
				t.Fatalf("bootstrap: %#v, want %s containing %q", res[0], tt.code, tt.want)
			}
			// Refused whole: no token and no bootstrap state, so a good bootstrap still works.
			assertSameACLState(t, before, readACLState(t, f))
			good, _ := newToken(structs.ManagementPolicy)
			mustApply(t, f, 4, bootstrapTokenCmd(t, good, 0))
			if st := readACLState(t, f); !st.Booted || st.Boot.Index != 4 {
				t.Fatalf("bootstrap after a refused one: %+v", st.Boot)
			}
		})
	}
}

func TestFSM_ACLBootstrapRaceInOneBatch(t *testing.T) {
	tests := []struct {
		name string
		// apply applies the bootstraps starting at index 1 and returns their results.
		apply func(t *testing.T, f *FSM, cmds [][]byte) []interface{}
	}{
		{"separate entries", func(t *testing.T, f *FSM, cmds [][]byte) []interface{} {
			return f.ApplyBatch(commandLogs(1, cmds...))
		}},
		{"one BatchType entry", func(t *testing.T, f *FSM, cmds [][]byte) []interface{} {
			res := f.ApplyBatch(commandLogs(1, group(t, cmds...)))
			inner, ok := res[0].([]interface{})
			if !ok {
				t.Fatalf("group result %#v", res[0])
			}
			return inner
		}},
	}
	for _, tt := range tests {
		for _, n := range []int{2, 3} {
			t.Run(tt.name+"/"+string(rune('0'+n)), func(t *testing.T) {
				f := testFSM(t)
				var cmds [][]byte
				var toks []structs.ACLToken
				var secrets []string
				for range n {
					tok, secret := newToken(structs.ManagementPolicy)
					toks, secrets = append(toks, tok), append(secrets, secret)
					cmds = append(cmds, bootstrapTokenCmd(t, tok, 0))
				}
				res := tt.apply(t, f, cmds)
				if len(res) != n {
					t.Fatalf("%d results for %d bootstraps", len(res), n)
				}
				if _, ok := res[0].(*structs.ACLToken); !ok {
					t.Fatalf("first bootstrap: %#v, want the token", res[0])
				}
				for i := 1; i < n; i++ {
					if codeOf(res[i]) != structs.CodeConflict {
						t.Fatalf("bootstrap %d: %#v, want already_exists", i, res[i])
					}
				}
				st := readACLState(t, f)
				if len(st.Tokens) != 1 || st.Tokens[0].AccessorID != toks[0].AccessorID {
					t.Fatalf("tokens %v, want exactly the first bootstrap's %s", accessors(st.Tokens), toks[0].AccessorID)
				}
				if !st.Booted || st.Boot.Index != 1 {
					t.Fatalf("bootstrap state %+v", st.Boot)
				}
				for i, s := range secrets[1:] {
					if _, err := tokenBySecret(t, f, s); structs.ErrorCode(err) != structs.CodeNotFound {
						t.Fatalf("losing bootstrap %d resolves: %v", i+1, err)
					}
				}
			})
		}
	}
}

func TestFSM_ACLBootstrapReset(t *testing.T) {
	f := testFSM(t)
	first, _ := newToken(structs.ManagementPolicy)
	mustApply(t, f, 1, bootstrapTokenCmd(t, first, 0))
	mustApply(t, f, 2, createModel(t, "m", nil)) // the applied index moves past the bootstrap's

	// cur is the stored bootstrap index, prev the one before the last reset.
	steps := []struct {
		name  string
		reset func(cur, prev uint64) uint64
		ok    bool
	}{
		{"no reset index", func(cur, prev uint64) uint64 { return 0 }, false},
		{"wrong reset index", func(cur, prev uint64) uint64 { return cur + 100 }, false},
		{"one past the bootstrap's index", func(cur, prev uint64) uint64 { return cur + 1 }, false},
		{"the bootstrap's index", func(cur, prev uint64) uint64 { return cur }, true},
		{"the old index is used up", func(cur, prev uint64) uint64 { return prev }, false},
		{"the applied index is not the bootstrap's", func(cur, prev uint64) uint64 { return f.AppliedIndex() }, false},
		{"the new bootstrap's index", func(cur, prev uint64) uint64 { return cur }, true},
	}
	cur, prev := uint64(1), uint64(0)
	winners := []string{first.AccessorID}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			index := f.AppliedIndex() + 1
			reset := s.reset(cur, prev)
			tok, secret := newToken(structs.ManagementPolicy)
			res := f.ApplyBatch(commandLogs(index, bootstrapTokenCmd(t, tok, reset)))
			if s.ok {
				if _, ok := res[0].(*structs.ACLToken); !ok {
					t.Fatalf("bootstrap at %d with reset %d: %#v, want the token", index, reset, res[0])
				}
				prev, cur = cur, index
				winners = append(winners, tok.AccessorID)
				if got, err := tokenBySecret(t, f, secret); err != nil || got.AccessorID != tok.AccessorID {
					t.Fatalf("new bootstrap token does not resolve: %v %v", got, err)
				}
			} else if codeOf(res[0]) != structs.CodeConflict {
				t.Fatalf("bootstrap at %d with reset %d (stored %d): %#v, want already_exists", index, reset, cur, res[0])
			}
			st := readACLState(t, f)
			if !st.Booted || st.Boot.Index != cur {
				t.Fatalf("bootstrap index %d, want %d", st.Boot.Index, cur)
			}
		})
	}
	// A reset mints another management token; the earlier ones stay (deleting
	// them is the operator's choice).
	got := accessors(readACLState(t, f).Tokens)
	slices.Sort(winners)
	if !slices.Equal(got, winners) {
		t.Fatalf("tokens %v, want the bootstrap tokens %v", got, winners)
	}
}

func TestFSM_ACLTokenCreate(t *testing.T) {
	f := testFSM(t)
	mustApply(t, f, 1, policyCmd(t, "readers", `model "*" { policy = "read" }`), policyCmd(t, "writers", `model "*" { policy = "write" }`))
	aclIndex := f.Index(ACLTables...)

	refused := []struct {
		name     string
		policies []string
		want     string
	}{
		{"unknown policy", []string{"nope"}, `policy "nope" does not exist`},
		{"one of two unknown", []string{"readers", "nope"}, `policy "nope" does not exist`},
		{"unknown first", []string{"nope", "readers"}, `policy "nope" does not exist`},
		{"unknown with management", []string{structs.ManagementPolicy, "nope"}, `policy "nope" does not exist`},
		{"invalid name", []string{"Readers"}, `policies[0] "Readers" is invalid`},
		{"no policies", nil, "policies is required"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := readACLState(t, f)
			tok, secret := newToken(tt.policies...)
			res := f.ApplyBatch(commandLogs(f.AppliedIndex()+1, tokenCmd(t, tok)))
			if codeOf(res[0]) != structs.CodeInvalid || !strings.Contains(res[0].(error).Error(), tt.want) {
				t.Fatalf("token create: %#v, want invalid_argument containing %q", res[0], tt.want)
			}
			assertSameACLState(t, before, readACLState(t, f))
			if _, err := tokenBySecret(t, f, secret); structs.ErrorCode(err) != structs.CodeNotFound {
				t.Fatalf("a refused token resolves: %v", err)
			}
			if f.Index(ACLTables...) != aclIndex {
				t.Fatalf("a refused token moved the ACL index to %d", f.Index(ACLTables...))
			}
		})
	}

	accepted := []struct {
		name     string
		policies []string
	}{
		{"one policy", []string{"readers"}},
		{"two policies", []string{"writers", "readers"}},
		{"management needs no policy record", []string{structs.ManagementPolicy}},
		{"management and a policy", []string{"readers", structs.ManagementPolicy}},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			tok, secret := newToken(tt.policies...)
			tok.Description = "for " + tt.name
			index := f.AppliedIndex() + 1
			res := f.ApplyBatch(commandLogs(index, tokenCmd(t, tok)))
			stored, ok := res[0].(*structs.ACLToken)
			if !ok {
				t.Fatalf("token create: %#v", res[0])
			}
			if stored.CreateIndex != index || stored.ModifyIndex != index {
				t.Fatalf("indexes %d/%d, want %d", stored.CreateIndex, stored.ModifyIndex, index)
			}
			got, err := tokenBySecret(t, f, secret)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, stored) {
				t.Fatalf("stored %+v, read back %+v", stored, got)
			}
			if f.Index(ACLTables...) != index {
				t.Fatalf("ACL index %d after a token at %d", f.Index(ACLTables...), index)
			}
		})
	}

	t.Run("same secret twice", func(t *testing.T) {
		a, _ := newToken("readers")
		b, _ := newToken("writers")
		b.SecretHash = a.SecretHash
		res := f.ApplyBatch(commandLogs(f.AppliedIndex()+1, tokenCmd(t, a), tokenCmd(t, b)))
		if codeOf(res[0]) != "" || codeOf(res[1]) != structs.CodeConflict {
			t.Fatalf("results %#v / %#v, want the second already_exists", res[0], res[1])
		}
		txn := f.ReadTxn()
		defer txn.Discard()
		if got, _ := txn.TokenBySecretHash(a.SecretHash); got == nil || got.AccessorID != a.AccessorID {
			t.Fatalf("the first token was replaced: %+v", got)
		}
	})

	t.Run("policy written earlier in the batch", func(t *testing.T) {
		tok, _ := newToken("late")
		res := f.ApplyBatch(commandLogs(f.AppliedIndex()+1, policyCmd(t, "late", `node { policy = "read" }`), tokenCmd(t, tok)))
		if codeOf(res[0]) != "" || codeOf(res[1]) != "" {
			t.Fatalf("results %#v / %#v", res[0], res[1])
		}
	})

	t.Run("policy deleted earlier in the batch", func(t *testing.T) {
		tok, secret := newToken("late")
		res := f.ApplyBatch(commandLogs(f.AppliedIndex()+1, policyDeleteCmd(t, "late"), tokenCmd(t, tok)))
		if codeOf(res[0]) != "" || codeOf(res[1]) != structs.CodeInvalid {
			t.Fatalf("results %#v / %#v, want the token refused", res[0], res[1])
		}
		if _, err := tokenBySecret(t, f, secret); structs.ErrorCode(err) != structs.CodeNotFound {
			t.Fatalf("token naming a deleted policy resolves: %v", err)
		}
	})
}

func TestFSM_ACLTokenDeleteByAccessor(t *testing.T) {
	f := testFSM(t)
	boot, bootSecret := newToken(structs.ManagementPolicy)
	a, aSecret := newToken("readers")
	b, bSecret := newToken("readers")
	c, cSecret := newToken("readers")
	mustApply(t, f, 1, bootstrapTokenCmd(t, boot, 0), policyCmd(t, "readers", `node { policy = "read" }`),
		tokenCmd(t, a), tokenCmd(t, b), tokenCmd(t, c))

	res := f.ApplyBatch(commandLogs(6, tokenDeleteCmd(t, b.AccessorID)))
	if res[0] != nil {
		t.Fatalf("delete: %#v", res[0])
	}
	if f.Index(ACLTables...) != 6 {
		t.Fatalf("ACL index %d after a delete at 6", f.Index(ACLTables...))
	}
	if _, err := tokenBySecret(t, f, bSecret); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("deleted token resolves: %v", err)
	}
	for _, s := range []string{aSecret, cSecret, bootSecret} {
		if _, err := tokenBySecret(t, f, s); err != nil {
			t.Fatalf("a token that was not deleted: %v", err)
		}
	}
	got := accessors(readACLState(t, f).Tokens)
	want := []string{boot.AccessorID, a.AccessorID, c.AccessorID}
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tokens %v, want %v (sorted by accessor)", got, want)
	}

	before := readACLState(t, f)
	for _, tt := range []struct {
		name, accessor string
	}{
		{"again", b.AccessorID},
		{"empty accessor", ""},
		{"unknown accessor", strings.Repeat("0", 32)},
		{"by secret hash", a.SecretHash},
		{"by secret", aSecret},
		{"by prefix", a.AccessorID[:8]},
	} {
		res := f.ApplyBatch(commandLogs(f.AppliedIndex()+1, tokenDeleteCmd(t, tt.accessor)))
		if codeOf(res[0]) != structs.CodeNotFound {
			t.Fatalf("delete %s: %#v, want not_found", tt.name, res[0])
		}
		assertSameACLState(t, before, readACLState(t, f))
	}
	if f.Index(ACLTables...) != 6 {
		t.Fatalf("refused deletes moved the ACL index to %d", f.Index(ACLTables...))
	}

	// Delete and re-create under the same accessor, then delete the
	// bootstrap token: one batch, read through each other's writes.
	again := a
	again.SecretHash = structs.HashSecret("a new secret")
	i := f.AppliedIndex() + 1
	res = f.ApplyBatch(commandLogs(i, tokenDeleteCmd(t, a.AccessorID), tokenCmd(t, again), tokenDeleteCmd(t, boot.AccessorID)))
	for j, r := range res {
		if codeOf(r) != "" {
			t.Fatalf("entry %d: %#v", i+uint64(j), r)
		}
	}
	if _, err := tokenBySecret(t, f, aSecret); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("the old secret resolves after re-creation: %v", err)
	}
	if got, err := tokenBySecret(t, f, "a new secret"); err != nil || got.AccessorID != a.AccessorID {
		t.Fatalf("re-created token: %v %v", got, err)
	}
	if _, err := tokenBySecret(t, f, bootSecret); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("deleted bootstrap token resolves: %v", err)
	}
	// Deleting the bootstrap token does not undo the bootstrap.
	if st := readACLState(t, f); !st.Booted || st.Boot.Index != 1 || len(st.Tokens) != 2 {
		t.Fatalf("after deletes: %+v", st)
	}
}

func TestFSM_ACLPolicyUpsertAndDelete(t *testing.T) {
	f := testFSM(t)
	tok, secret := newToken("readers", "writers")
	mustApply(t, f, 1,
		policyCmd(t, "readers", `model "*" { policy = "read" }`),
		policyCmd(t, "writers", `model "*" { policy = "write" }`),
		tokenCmd(t, tok),
	)

	// Replacing a policy keeps its creation, moves its modify index.
	later := t0.Add(time.Hour)
	res := f.ApplyBatch(commandLogs(4, encode(t, structs.ACLPolicyUpsertType, &structs.ACLPolicyUpsertRequest{Policy: structs.ACLPolicy{
		Name: "readers", Description: "read models", Rules: `model "*" { policy = "deny" }`, CreatedAt: later, UpdatedAt: later,
	}})))
	p, ok := res[0].(*structs.ACLPolicy)
	if !ok {
		t.Fatalf("upsert: %#v", res[0])
	}
	if p.CreateIndex != 1 || p.ModifyIndex != 4 || !p.CreatedAt.Equal(t0) || !p.UpdatedAt.Equal(later) || p.Rules != `model "*" { policy = "deny" }` {
		t.Fatalf("replaced policy %+v", p)
	}
	txn := f.ReadTxn()
	if got, err := txn.Policy("readers"); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("Policy(readers) = %+v, %v; want %+v", got, err, p)
	}
	txn.Discard()

	// Refused upserts and deletes change nothing.
	before := readACLState(t, f)
	for _, tt := range []struct {
		name string
		cmd  []byte
		code string
	}{
		{"upsert management", policyCmd(t, structs.ManagementPolicy, `node { policy = "read" }`), structs.CodeInvalid},
		{"upsert bad rules", policyCmd(t, "readers", `model "*" { policy = "allow" }`), structs.CodeInvalid},
		{"upsert bad name", policyCmd(t, "Readers", ``), structs.CodeInvalid},
		{"delete missing", policyDeleteCmd(t, "nope"), structs.CodeNotFound},
		{"delete bad name", policyDeleteCmd(t, "Bad/name"), structs.CodeInvalid},
		{"delete empty name", policyDeleteCmd(t, ""), structs.CodeInvalid},
		{"delete management", policyDeleteCmd(t, structs.ManagementPolicy), structs.CodeNotFound},
	} {
		res := f.ApplyBatch(commandLogs(f.AppliedIndex()+1, tt.cmd))
		if codeOf(res[0]) != tt.code {
			t.Fatalf("%s: %#v, want %s", tt.name, res[0], tt.code)
		}
		assertSameACLState(t, before, readACLState(t, f))
	}
	if f.Index(ACLTables...) != 4 {
		t.Fatalf("refused policy commands moved the ACL index to %d", f.Index(ACLTables...))
	}

	i := f.AppliedIndex() + 1
	res = f.ApplyBatch(commandLogs(i, policyDeleteCmd(t, "readers")))
	if res[0] != nil {
		t.Fatalf("delete: %#v", res[0])
	}
	if f.Index(ACLTables...) != i {
		t.Fatalf("ACL index %d after a policy delete at %d", f.Index(ACLTables...), i)
	}
	st := readACLState(t, f)
	if len(st.Policies) != 1 || st.Policies[0].Name != "writers" {
		t.Fatalf("policies after delete: %+v", st.Policies)
	}
	txn = f.ReadTxn()
	defer txn.Discard()
	if _, err := txn.Policy("readers"); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("deleted policy: %v", err)
	}
	// The token that named it stays, still naming it: it just gets no rules from it.
	got, err := txn.TokenBySecretHash(structs.HashSecret(secret))
	if err != nil || !reflect.DeepEqual(got.Policies, []string{"readers", "writers"}) {
		t.Fatalf("token after its policy was deleted: %+v %v", got, err)
	}
}

func TestFSM_ACLIndexMovesOnACLWrites(t *testing.T) {
	f := testFSM(t)
	if f.Index(ACLTables...) != 0 {
		t.Fatalf("fresh FSM has ACL index %d", f.Index(ACLTables...))
	}
	boot, _ := newToken(structs.ManagementPolicy)
	tok, _ := newToken("p")
	unknown, _ := newToken("nope")
	steps := []struct {
		name  string
		cmds  func(t *testing.T) [][]byte
		moves bool
	}{
		{"model create", func(t *testing.T) [][]byte { return [][]byte{createModel(t, "m", nil)} }, false},
		{"policy upsert", func(t *testing.T) [][]byte { return [][]byte{policyCmd(t, "p", `node { policy = "read" }`)} }, true},
		{"model update and node", func(t *testing.T) [][]byte {
			return [][]byte{updateModel(t, "m", map[string]*string{"k": ptr("v")}), upsertNode(t, "n1", 4)}
		}, false},
		{"refused policy", func(t *testing.T) [][]byte { return [][]byte{policyCmd(t, "q", `nope {}`)} }, false},
		{"token create", func(t *testing.T) [][]byte { return [][]byte{tokenCmd(t, tok)} }, true},
		{"refused token", func(t *testing.T) [][]byte { return [][]byte{tokenCmd(t, unknown)} }, false},
		{"bootstrap", func(t *testing.T) [][]byte { return [][]byte{bootstrapTokenCmd(t, boot, 0)} }, true},
		{"refused bootstrap", func(t *testing.T) [][]byte { b, _ := bootstrapCmd(t, 0); return [][]byte{b} }, false},
		{"model delete", func(t *testing.T) [][]byte { return [][]byte{deleteModel(t, "m")} }, false},
		{"ACL write then model write", func(t *testing.T) [][]byte {
			return [][]byte{policyCmd(t, "p2", `node { policy = "read" }`), createModel(t, "m2", nil)}
		}, true},
		{"ACL write in a BatchType entry", func(t *testing.T) [][]byte {
			return [][]byte{group(t, createModel(t, "m3", nil), policyCmd(t, "p3", `node { policy = "read" }`))}
		}, true},
		{"model writes in a BatchType entry", func(t *testing.T) [][]byte {
			return [][]byte{group(t, createModel(t, "m4", nil), deleteModel(t, "m4"))}
		}, false},
		{"token delete", func(t *testing.T) [][]byte { return [][]byte{tokenDeleteCmd(t, tok.AccessorID)} }, true},
		{"refused token delete", func(t *testing.T) [][]byte { return [][]byte{tokenDeleteCmd(t, tok.AccessorID)} }, false},
		{"policy delete", func(t *testing.T) [][]byte { return [][]byte{policyDeleteCmd(t, "p")} }, true},
		{"refused policy delete", func(t *testing.T) [][]byte { return [][]byte{policyDeleteCmd(t, "p")} }, false},
	}
	index := uint64(1)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := f.Index(ACLTables...)
			cmds := s.cmds(t)
			f.ApplyBatch(commandLogs(index, cmds...))
			last := index + uint64(len(cmds)) - 1
			index = last + 1
			if f.AppliedIndex() != last {
				t.Fatalf("applied index %d, want %d", f.AppliedIndex(), last)
			}
			want := before
			if s.moves {
				want = last
			}
			if f.Index(ACLTables...) != want {
				t.Fatalf("ACL index %d, want %d (before %d, batch up to %d)", f.Index(ACLTables...), want, before, last)
			}
		})
	}
}

func TestFSM_ACLSnapshotRoundTrip(t *testing.T) {
	src := testFSM(t)
	boot, bootSecret := newToken(structs.ManagementPolicy)
	reader, readerSecret := newToken("readers")
	reader.Description = "dashboards"
	reader.ExpirationTime = t0.Add(30 * 24 * time.Hour)
	both, bothSecret := newToken("readers", "deployers")
	orphan, orphanSecret := newToken("gone") // its policy is deleted below
	mustApply(t, src, 1,
		bootstrapTokenCmd(t, boot, 0),
		policyCmd(t, "readers", `model "*" { policy = "read" }`),
		encode(t, structs.ACLPolicyUpsertType, &structs.ACLPolicyUpsertRequest{Policy: structs.ACLPolicy{
			Name: "deployers", Description: "ship fraud models", CreatedAt: t0, UpdatedAt: t0,
			Rules: "model \"fraud-*\" { policy = \"write\" }\ndeployment \"fraud-*\" { policy = \"write\" }\npredict \"*\" { policy = \"allow\" }",
		}}),
		policyCmd(t, "gone", `node { policy = "read" }`),
		tokenCmd(t, reader),
		tokenCmd(t, both),
		tokenCmd(t, orphan),
		policyDeleteCmd(t, "gone"),
		createModel(t, "fraud-a", nil),
	)
	want := readACLState(t, src)
	wantModels := readState(t, src)
	if len(want.Policies) != 2 || len(want.Tokens) != 4 || !want.Booted || want.Boot.Index != 1 {
		t.Fatalf("source ACL state: %+v", want)
	}

	snap := snapshotBytes(t, src)
	secrets := []string{bootSecret, readerSecret, bothSecret, orphanSecret}
	for _, s := range secrets {
		for _, form := range []string{s, strings.ReplaceAll(s, "-", ""), strings.ToUpper(s)} {
			if bytes.Contains(snap, []byte(form)) {
				t.Fatalf("the snapshot holds a token secret (%q)", form)
			}
		}
	}
	for _, tok := range []structs.ACLToken{boot, reader, both, orphan} {
		if !bytes.Contains(snap, []byte(tok.SecretHash)) || !bytes.Contains(snap, []byte(tok.AccessorID)) {
			t.Fatalf("the snapshot lacks token %s: the secret check proves nothing", tok.AccessorID)
		}
	}

	targets := []struct {
		name string
		fill func(t *testing.T, f *FSM) (gone []string) // secrets that must not survive the restore
	}{
		{"empty", func(*testing.T, *FSM) []string { return nil }},
		{"with ACL state of its own", func(t *testing.T, f *FSM) []string {
			own, ownSecret := newToken(structs.ManagementPolicy)
			other, otherSecret := newToken("locals")
			mustApply(t, f, 1,
				policyCmd(t, "locals", `exec { policy = "allow" }`),
				policyCmd(t, "readers", `acl { policy = "write" }`), // same name, other rules
				createModel(t, "x", nil), createModel(t, "y", nil), createModel(t, "z", nil),
				bootstrapTokenCmd(t, own, 0), // bootstrapped at 6, not 1
				tokenCmd(t, other),
			)
			return []string{ownSecret, otherSecret}
		}},
	}
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			dst := testFSM(t)
			gone := tt.fill(t, dst)
			if err := restoreBytes(dst, snap); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			assertSameACLState(t, want, readACLState(t, dst))
			assertSameState(t, wantModels, readState(t, dst))
			if dst.Index(ACLTables...) != src.AppliedIndex() || dst.AppliedIndex() != src.AppliedIndex() {
				t.Fatalf("after restore: ACL index %d, applied %d; want both %d", dst.Index(ACLTables...), dst.AppliedIndex(), src.AppliedIndex())
			}
			for i, s := range secrets {
				if _, err := tokenBySecret(t, dst, s); err != nil {
					t.Fatalf("restored token %d does not resolve by its secret: %v", i, err)
				}
			}
			for _, s := range gone {
				if _, err := tokenBySecret(t, dst, s); structs.ErrorCode(err) != structs.CodeNotFound {
					t.Fatalf("a token of the restored-over state survives: %v", err)
				}
			}
			txn := dst.ReadTxn()
			p, err := txn.Policy("readers")
			txn.Discard()
			if err != nil || p.Rules != `model "*" { policy = "read" }` {
				t.Fatalf("restored readers policy: %+v %v", p, err)
			}
			// The same state snapshots to the same bytes.
			if again := snapshotBytes(t, dst); !bytes.Equal(again, snap) {
				t.Fatal("a snapshot of the restored state differs from the one restored")
			}
			// The bootstrap state came along: a plain bootstrap is refused, the reset index works.
			next := dst.AppliedIndex() + 1
			b2, _ := newToken(structs.ManagementPolicy)
			b3, _ := newToken(structs.ManagementPolicy)
			res := dst.ApplyBatch(commandLogs(next, bootstrapTokenCmd(t, b2, 0), bootstrapTokenCmd(t, b3, want.Boot.Index)))
			if codeOf(res[0]) != structs.CodeConflict || codeOf(res[1]) != "" {
				t.Fatalf("bootstraps after restore: %#v / %#v", res[0], res[1])
			}
		})
	}
}
