package raftfsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// digestOf returns a well-formed sha256 digest made from n.
func digestOf(n int) string { return fmt.Sprintf("%064x", n) }

// linearVersion is a valid version of model with every field a proposer fills.
func linearVersion(model string) structs.ModelVersion {
	return structs.ModelVersion{
		Model: model, Format: "linear", Digest: digestOf(1), Size: 128,
		Schema: structs.Schema{
			Inputs:       []structs.TensorSpec{{Name: "x", DataType: "FP32", Shape: []int{-1, 4}}},
			Outputs:      []structs.TensorSpec{{Name: "y", DataType: "FP32", Shape: []int{-1}}},
			FeatureNames: []string{"a", "b", "c", "d"},
		},
		Metadata:  map[string]string{"b": "2", "a": "1"},
		Lineage:   structs.Lineage{JobID: "job-1", Dataset: "flowers"},
		Holders:   []string{"node-1", "node-2"},
		CreatedAt: t0,
	}
}

// processVersion is a valid version served by a user's process, without artifact.
func processVersion(model string) structs.ModelVersion {
	return structs.ModelVersion{
		Model: model, Format: structs.FormatProcess,
		Process:   &structs.ProcessSpec{Command: []string{"python", "serve.py"}, Env: map[string]string{"B": "2", "A": "1"}},
		CreatedAt: t0,
	}
}

func encodeVersion(t testing.TB, v structs.ModelVersion) []byte {
	return encode(t, structs.VersionCreateType, &structs.VersionCreateRequest{Version: v})
}

func createVersion(t testing.TB, model string) []byte {
	return encodeVersion(t, linearVersion(model))
}

func deleteVersion(t testing.TB, model string, v uint64) []byte {
	return encode(t, structs.VersionDeleteType, &structs.VersionDeleteRequest{Model: model, Version: v})
}

var aliasTime = t0.Add(time.Minute)

func setAlias(t testing.TB, model, alias string, v uint64) []byte {
	return encode(t, structs.AliasSetType, &structs.AliasSetRequest{Model: model, Alias: alias, Version: v, UpdatedAt: aliasTime})
}

func split(v uint64, weight int) structs.TrafficSplit {
	return structs.TrafficSplit{Version: v, Weight: weight}
}

func trafficOf(splits ...structs.TrafficSplit) structs.Traffic {
	return structs.Traffic{Versions: splits}
}

func shadowed(tr structs.Traffic, shadow uint64) structs.Traffic {
	tr.Shadow = shadow
	return tr
}

// deploymentOf is a valid deployment of model name with the given traffic.
func deploymentOf(name string, tr structs.Traffic) structs.Deployment {
	return structs.Deployment{
		Name: name, Traffic: tr, Replicas: 2,
		Batching:  structs.Batching{MaxBatch: 8, MaxWaitMS: 5},
		Resources: structs.ReplicaResources{MemoryMB: 256},
		CreatedAt: t0, UpdatedAt: t0,
	}
}

func encodeDeployment(t testing.TB, d structs.Deployment) []byte {
	return encode(t, structs.DeploymentPutType, &structs.DeploymentPutRequest{Deployment: d})
}

func putDeployment(t testing.TB, name string, tr structs.Traffic) []byte {
	return encodeDeployment(t, deploymentOf(name, tr))
}

var rollbackTime = t0.Add(2 * time.Hour)

func rollbackDeployment(t testing.TB, name string) []byte {
	return encode(t, structs.DeploymentRollbackType, &structs.DeploymentRollbackRequest{Name: name, UpdatedAt: rollbackTime})
}

func deleteDeployment(t testing.TB, name string) []byte {
	return encode(t, structs.DeploymentDeleteType, &structs.DeploymentDeleteRequest{Name: name})
}

func allocOf(id, deployment string, v uint64, node string) structs.Allocation {
	return structs.Allocation{ID: id, Deployment: deployment, Version: v, NodeID: node, MemoryMB: 64, CreatedAt: t0}
}

func planAllocs(t testing.TB, add []structs.Allocation, remove ...string) []byte {
	return encode(t, structs.AllocPlanFitType, &structs.AllocPlanRequest{Add: add, Remove: remove})
}

func reportAllocs(t testing.TB, updates ...structs.AllocStatusUpdate) []byte {
	return encode(t, structs.AllocStatusType, &structs.AllocStatusRequest{Updates: updates})
}

func report(id, node, state, msg string) structs.AllocStatusUpdate {
	return structs.AllocStatusUpdate{ID: id, NodeID: node, State: state, Message: msg}
}

// irisEntries is how many entries irisSetup applies before its extra ones.
const irisEntries = 6

// irisSetup is model iris with versions 1 to 3 and nodes node-1 and node-2,
// followed by more.
func irisSetup(t testing.TB, more ...[]byte) [][]byte {
	return append([][]byte{
		createModel(t, "iris", nil),
		createVersion(t, "iris"),
		createVersion(t, "iris"),
		createVersion(t, "iris"),
		upsertNode(t, "node-1", 8),
		upsertNode(t, "node-2", 8),
	}, more...)
}

// mustApply applies data as one batch from index first; every entry must succeed.
func mustApply(t testing.TB, f *FSM, first uint64, data ...[]byte) []interface{} {
	t.Helper()
	results := f.ApplyBatch(commandLogs(first, data...))
	for i, res := range results {
		if err, ok := res.(error); ok {
			t.Fatalf("entry %d: %v", first+uint64(i), err)
		}
	}
	return results
}

// servingState is everything an FSM holds, serving records included.
type servingState struct {
	Index       uint64
	Models      []*structs.Model
	Nodes       []*structs.Node
	Versions    []*structs.ModelVersion
	Deployments []*structs.Deployment
	Allocations []*structs.Allocation
}

func readServingState(t testing.TB, f *FSM) servingState {
	t.Helper()
	txn := f.ReadTxn()
	defer txn.Discard()
	var st servingState
	var err error
	st.Index = txn.Index()
	if st.Models, _, err = txn.Models("", 0); err != nil {
		t.Fatalf("Models: %v", err)
	}
	if st.Nodes, err = txn.Nodes(); err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	if err = txn.AllVersions(func(v *structs.ModelVersion) { st.Versions = append(st.Versions, utcVersion(v)) }); err != nil {
		t.Fatalf("AllVersions: %v", err)
	}
	if st.Deployments, _, err = txn.Deployments("", 0); err != nil {
		t.Fatalf("Deployments: %v", err)
	}
	if st.Allocations, err = txn.Allocations(); err != nil {
		t.Fatalf("Allocations: %v", err)
	}
	return st
}

func assertSameServingState(t testing.TB, want, got servingState) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		w, _ := json.MarshalIndent(want, "", " ")
		g, _ := json.MarshalIndent(got, "", " ")
		t.Fatalf("state differs\nwant %s\ngot  %s", w, g)
	}
}

func mustModel(t *testing.T, txn *Txn, name string) *structs.Model {
	t.Helper()
	m, err := txn.Model(name)
	if err != nil {
		t.Fatalf("Model(%q): %v", name, err)
	}
	return m
}

func mustVersion(t *testing.T, txn *Txn, model string, v uint64) *structs.ModelVersion {
	t.Helper()
	mv, err := txn.Version(model, v)
	if err != nil {
		t.Fatalf("Version(%q, %d): %v", model, v, err)
	}
	return mv
}

func mustDeployment(t *testing.T, txn *Txn, name string) *structs.Deployment {
	t.Helper()
	d, err := txn.Deployment(name)
	if err != nil {
		t.Fatalf("Deployment(%q): %v", name, err)
	}
	return d
}

func versionNumbers(t *testing.T, txn *Txn, model string) []uint64 {
	t.Helper()
	items, _, err := txn.Versions(model, "", 0)
	if err != nil {
		t.Fatalf("Versions(%q): %v", model, err)
	}
	var out []uint64
	for _, v := range items {
		out = append(out, v.Version)
	}
	return out
}

func mustAlloc(t *testing.T, txn *Txn, id string) *structs.Allocation {
	t.Helper()
	allocs, err := txn.Allocations()
	if err != nil {
		t.Fatalf("Allocations: %v", err)
	}
	for _, a := range allocs {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("allocation %q not found", id)
	return nil
}

func allocIDs(t *testing.T, txn *Txn) []string {
	t.Helper()
	allocs, err := txn.Allocations()
	if err != nil {
		t.Fatalf("Allocations: %v", err)
	}
	var ids []string
	for _, a := range allocs {
		ids = append(ids, a.ID)
	}
	return ids
}

func assertAliases(t *testing.T, txn *Txn, model string, want map[string]uint64) {
	t.Helper()
	m := mustModel(t, txn, model)
	if len(m.Aliases) != len(want) || (len(want) > 0 && !reflect.DeepEqual(map[string]uint64(m.Aliases), want)) {
		t.Fatalf("Aliases = %v, want %v", m.Aliases, want)
	}
}

func assertTraffic(t *testing.T, got, want structs.Traffic) {
	t.Helper()
	if got.Shadow != want.Shadow || !reflect.DeepEqual(got.Versions, want.Versions) {
		t.Fatalf("traffic = %+v, want %+v", got, want)
	}
}

func assertHistory(t *testing.T, got []structs.Traffic, want ...structs.Traffic) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("history = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Shadow != want[i].Shadow || !reflect.DeepEqual(got[i].Versions, want[i].Versions) {
			t.Fatalf("history[%d] = %+v, want %+v (whole history %+v)", i, got[i], want[i], got)
		}
	}
}

func assertNoVersion(t *testing.T, txn *Txn, model string, v uint64) {
	t.Helper()
	if mv, err := txn.Version(model, v); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("Version(%q, %d) = %+v, %v; want not_found", model, v, mv, err)
	}
}

func assertNoDeployment(t *testing.T, txn *Txn, name string) {
	t.Helper()
	if d, err := txn.Deployment(name); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("Deployment(%q) = %+v, %v; want not_found", name, d, err)
	}
}

// servingCase is one command applied after its setup, as in TestFSM_Commands.
type servingCase struct {
	name     string
	setup    func(t *testing.T) [][]byte // applied first as one batch, each must succeed
	cmd      func(t *testing.T) []byte   // applied at index len(setup)+1
	wantCode string                      // "" for success
	wantMsg  string                      // part of the rejection's message
	check    func(t *testing.T, txn *Txn, index uint64, res interface{})
}

// runServingCases runs each case on a fresh FSM. A rejected command must leave
// the state as it was, but for the applied index.
func runServingCases(t *testing.T, tests []servingCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFSM(t)
			var setup [][]byte
			if tt.setup != nil {
				setup = tt.setup(t)
			}
			mustApply(t, f, 1, setup...)
			before := readServingState(t, f)
			index := uint64(len(setup) + 1)
			res := f.Apply(commandLogs(index, tt.cmd(t))[0])
			if got := codeOf(res); got != tt.wantCode {
				t.Fatalf("result %v has code %q, want %q", res, got, tt.wantCode)
			}
			if tt.wantMsg != "" {
				ce, ok := res.(*structs.CodedError)
				if !ok || !strings.Contains(ce.Message, tt.wantMsg) {
					t.Fatalf("result %v, want a rejection mentioning %q", res, tt.wantMsg)
				}
			}
			if f.AppliedIndex() != index {
				t.Fatalf("AppliedIndex() = %d, want %d", f.AppliedIndex(), index)
			}
			if tt.wantCode != "" {
				after := readServingState(t, f)
				before.Index = index
				assertSameServingState(t, before, after)
			}
			if tt.check != nil {
				txn := f.ReadTxn()
				defer txn.Discard()
				tt.check(t, txn, index, res)
			}
		})
	}
}

func TestFSM_VersionCreate(t *testing.T) {
	irisOnly := func(t *testing.T) [][]byte { return [][]byte{createModel(t, "iris", nil)} }
	invalid := func(name, wantMsg string, change func(v *structs.ModelVersion)) servingCase {
		return servingCase{
			name:  name,
			setup: irisOnly,
			cmd: func(t *testing.T) []byte {
				v := linearVersion("iris")
				change(&v)
				return encodeVersion(t, v)
			},
			wantCode: structs.CodeInvalid,
			wantMsg:  wantMsg,
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				if m := mustModel(t, txn, "iris"); m.LatestVersion != 0 {
					t.Fatalf("LatestVersion = %d after a rejected create, want 0", m.LatestVersion)
				}
			},
		}
	}
	tests := []servingCase{
		{
			name:  "first version is 1",
			setup: irisOnly,
			cmd:   func(t *testing.T) []byte { return createVersion(t, "iris") },
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				want := linearVersion("iris")
				want.Version, want.CreateIndex = 1, index
				got := mustVersion(t, txn, "iris", 1)
				if !reflect.DeepEqual(got, &want) {
					t.Fatalf("Version = %+v, want %+v", got, &want)
				}
				if !reflect.DeepEqual(res, got) {
					t.Fatalf("result = %+v, want the stored version", res)
				}
				if m := mustModel(t, txn, "iris"); m.LatestVersion != 1 || m.ModifyIndex != index || m.CreateIndex != 1 {
					t.Fatalf("model = %+v, want latest version 1 modified at %d", m, index)
				}
			},
		},
		{
			name: "numbers count up",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{createModel(t, "iris", nil), createVersion(t, "iris"), createVersion(t, "iris")}
			},
			cmd: func(t *testing.T) []byte { return createVersion(t, "iris") },
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				if v, ok := res.(*structs.ModelVersion); !ok || v.Version != 3 || v.CreateIndex != index {
					t.Fatalf("result = %+v, want version 3 created at %d", res, index)
				}
				if got := versionNumbers(t, txn, "iris"); !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
					t.Fatalf("versions = %v, want [1 2 3]", got)
				}
				if v := mustVersion(t, txn, "iris", 2); v.CreateIndex != 3 {
					t.Fatalf("version 2 created at %d, want 3", v.CreateIndex)
				}
				if m := mustModel(t, txn, "iris"); m.LatestVersion != 3 {
					t.Fatalf("LatestVersion = %d, want 3", m.LatestVersion)
				}
			},
		},
		{
			name: "numbers are not reused after a delete",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{createModel(t, "iris", nil), createVersion(t, "iris"), createVersion(t, "iris"), deleteVersion(t, "iris", 2)}
			},
			cmd: func(t *testing.T) []byte { return createVersion(t, "iris") },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				if v, ok := res.(*structs.ModelVersion); !ok || v.Version != 3 {
					t.Fatalf("result = %+v, want version 3", res)
				}
				if got := versionNumbers(t, txn, "iris"); !reflect.DeepEqual(got, []uint64{1, 3}) {
					t.Fatalf("versions = %v, want [1 3]", got)
				}
				assertNoVersion(t, txn, "iris", 2)
				if m := mustModel(t, txn, "iris"); m.LatestVersion != 3 {
					t.Fatalf("LatestVersion = %d, want 3", m.LatestVersion)
				}
			},
		},
		{
			name: "numbers are not reused after every version is deleted",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{createModel(t, "iris", nil), createVersion(t, "iris"), deleteVersion(t, "iris", 1)}
			},
			cmd: func(t *testing.T) []byte { return createVersion(t, "iris") },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				if got := versionNumbers(t, txn, "iris"); !reflect.DeepEqual(got, []uint64{2}) {
					t.Fatalf("versions = %v, want [2]", got)
				}
			},
		},
		{
			name:  "number and index in the request are ignored",
			setup: irisOnly,
			cmd: func(t *testing.T) []byte {
				v := linearVersion("iris")
				v.Version, v.CreateIndex = 42, 77
				return encodeVersion(t, v)
			},
			check: func(t *testing.T, txn *Txn, index uint64, _ interface{}) {
				if v := mustVersion(t, txn, "iris", 1); v.CreateIndex != index {
					t.Fatalf("version 1 created at %d, want %d", v.CreateIndex, index)
				}
				assertNoVersion(t, txn, "iris", 42)
			},
		},
		{
			name:  "process version without an artifact",
			setup: irisOnly,
			cmd:   func(t *testing.T) []byte { return encodeVersion(t, processVersion("iris")) },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				v := mustVersion(t, txn, "iris", 1)
				want := processVersion("iris").Process
				if v.Format != structs.FormatProcess || v.Digest != "" || len(v.Holders) != 0 || !reflect.DeepEqual(v.Process, want) {
					t.Fatalf("version = %+v (process %+v), want process %+v", v, v.Process, want)
				}
			},
		},
		{
			name:  "process version with an artifact",
			setup: irisOnly,
			cmd: func(t *testing.T) []byte {
				v := processVersion("iris")
				v.Digest, v.Holders = digestOf(7), []string{"node-1"}
				return encodeVersion(t, v)
			},
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				if v := mustVersion(t, txn, "iris", 1); v.Digest != digestOf(7) {
					t.Fatalf("digest = %q", v.Digest)
				}
			},
		},
		{
			name:     "unknown model",
			setup:    irisOnly,
			cmd:      func(t *testing.T) []byte { return createVersion(t, "rose") },
			wantCode: structs.CodeNotFound,
			wantMsg:  `model "rose"`,
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertNoVersion(t, txn, "rose", 1)
			},
		},
		invalid("invalid model name", "model", func(v *structs.ModelVersion) { v.Model = "Iris!" }),
		invalid("unknown format", "format", func(v *structs.ModelVersion) { v.Format = "pickle" }),
		invalid("empty format", "format", func(v *structs.ModelVersion) { v.Format = "" }),
		invalid("short digest", "digest", func(v *structs.ModelVersion) { v.Digest = "abc123" }),
		invalid("uppercase digest", "digest", func(v *structs.ModelVersion) { v.Digest = strings.ToUpper(digestOf(0xabcdef)) }),
		invalid("missing digest", "digest", func(v *structs.ModelVersion) { v.Digest = "" }),
		invalid("no holders", "holders", func(v *structs.ModelVersion) { v.Holders = nil }),
		invalid("negative size", "size", func(v *structs.ModelVersion) { v.Size = -1 }),
		invalid("process without a spec", "process is required", func(v *structs.ModelVersion) { v.Format = structs.FormatProcess }),
		invalid("process with an empty command", "process.command", func(v *structs.ModelVersion) {
			*v = processVersion("iris")
			v.Process.Command = []string{""}
		}),
		invalid("process with a bad env key", "process.env", func(v *structs.ModelVersion) {
			*v = processVersion("iris")
			v.Process.Env = map[string]string{"A=B": "1"}
		}),
		invalid("process with a digest but no holders", "holders", func(v *structs.ModelVersion) {
			*v = processVersion("iris")
			v.Digest = digestOf(3)
		}),
		invalid("process spec on another format", "process is only allowed", func(v *structs.ModelVersion) {
			v.Process = &structs.ProcessSpec{Command: []string{"serve"}}
		}),
		invalid("too much metadata", "metadata", func(v *structs.ModelVersion) {
			v.Metadata = map[string]string{}
			for i := range structs.MaxMetadata + 1 {
				v.Metadata[fmt.Sprintf("k%03d", i)] = "v"
			}
		}),
		invalid("tensor with too many dimensions", "schema", func(v *structs.ModelVersion) {
			v.Schema.Inputs[0].Shape = []int{1, 1, 1, 1, 1, 1, 1, 1, 1}
		}),
	}
	runServingCases(t, tests)
}

func TestFSM_VersionDelete(t *testing.T) {
	tests := []servingCase{
		{
			name:  "delete",
			setup: func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:   func(t *testing.T) []byte { return deleteVersion(t, "iris", 2) },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				if res != nil {
					t.Fatalf("result = %v, want nil", res)
				}
				assertNoVersion(t, txn, "iris", 2)
				if got := versionNumbers(t, txn, "iris"); !reflect.DeepEqual(got, []uint64{1, 3}) {
					t.Fatalf("versions = %v, want [1 3]", got)
				}
				// No alias pointed at it: the model record is not rewritten.
				if m := mustModel(t, txn, "iris"); m.LatestVersion != 3 || m.ModifyIndex != 4 {
					t.Fatalf("model = %+v, want latest version 3 and modify index 4", m)
				}
			},
		},
		{
			name:     "missing version",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t, deleteVersion(t, "iris", 2)) },
			cmd:      func(t *testing.T) []byte { return deleteVersion(t, "iris", 2) },
			wantCode: structs.CodeNotFound,
			wantMsg:  "version 2",
		},
		{
			name:     "version never created",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return deleteVersion(t, "iris", 9) },
			wantCode: structs.CodeNotFound,
		},
		{
			name:     "missing model",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return deleteVersion(t, "rose", 1) },
			wantCode: structs.CodeNotFound,
			wantMsg:  `model "rose"`,
		},
		{
			name: "refused while taking weighted traffic",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", trafficOf(split(1, 90), split(2, 10))))
			},
			cmd:      func(t *testing.T) []byte { return deleteVersion(t, "iris", 2) },
			wantCode: structs.CodeConflict,
			wantMsg:  "deployed",
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				mustVersion(t, txn, "iris", 2)
			},
		},
		{
			name: "refused while taking traffic at weight 0",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", trafficOf(split(1, 100), split(2, 0))))
			},
			cmd:      func(t *testing.T) []byte { return deleteVersion(t, "iris", 2) },
			wantCode: structs.CodeConflict,
		},
		{
			name: "refused while shadowed",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", shadowed(trafficOf(split(1, 100)), 3)))
			},
			cmd:      func(t *testing.T) []byte { return deleteVersion(t, "iris", 3) },
			wantCode: structs.CodeConflict,
			wantMsg:  "deployed",
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				mustVersion(t, txn, "iris", 3)
			},
		},
		{
			name: "allowed when only the history names it",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t,
					putDeployment(t, "iris", trafficOf(split(1, 100))),
					putDeployment(t, "iris", trafficOf(split(2, 100))))
			},
			cmd: func(t *testing.T) []byte { return deleteVersion(t, "iris", 1) },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertNoVersion(t, txn, "iris", 1)
			},
		},
		{
			name: "allowed for a version another model deploys",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, createModel(t, "wine", nil), createVersion(t, "wine"),
					putDeployment(t, "wine", trafficOf(split(1, 100))))
			},
			cmd: func(t *testing.T) []byte { return deleteVersion(t, "iris", 1) },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertNoVersion(t, txn, "iris", 1)
				mustVersion(t, txn, "wine", 1)
			},
		},
		{
			name: "removes the aliases pointing at it",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t,
					setAlias(t, "iris", "champion", 1),
					setAlias(t, "iris", "challenger", 2),
					setAlias(t, "iris", "first", 1))
			},
			cmd: func(t *testing.T) []byte { return deleteVersion(t, "iris", 1) },
			check: func(t *testing.T, txn *Txn, index uint64, _ interface{}) {
				assertAliases(t, txn, "iris", map[string]uint64{"challenger": 2})
				if m := mustModel(t, txn, "iris"); m.ModifyIndex != index || m.LatestVersion != 3 {
					t.Fatalf("model = %+v, want modify index %d and latest version 3", m, index)
				}
			},
		},
	}
	runServingCases(t, tests)
}

func TestFSM_AliasSet(t *testing.T) {
	manyAliases := func(t *testing.T) [][]byte {
		var more [][]byte
		for i := range structs.MaxAliases {
			more = append(more, setAlias(t, "iris", fmt.Sprintf("a%02d", i), uint64(i%3+1)))
		}
		return irisSetup(t, more...)
	}
	tests := []servingCase{
		{
			name:  "set",
			setup: func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:   func(t *testing.T) []byte { return setAlias(t, "iris", "champion", 1) },
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				m := mustModel(t, txn, "iris")
				assertAliases(t, txn, "iris", map[string]uint64{"champion": 1})
				if m.ModifyIndex != index || !m.UpdatedAt.Equal(aliasTime) || m.LatestVersion != 3 || m.CreateIndex != 1 {
					t.Fatalf("model = %+v, want modified at %d, updated at %v", m, index, aliasTime)
				}
				if !reflect.DeepEqual(res, m) {
					t.Fatalf("result = %+v, want the stored model", res)
				}
			},
		},
		{
			name:  "move",
			setup: func(t *testing.T) [][]byte { return irisSetup(t, setAlias(t, "iris", "champion", 1)) },
			cmd:   func(t *testing.T) []byte { return setAlias(t, "iris", "champion", 3) },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertAliases(t, txn, "iris", map[string]uint64{"champion": 3})
			},
		},
		{
			name: "delete",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, setAlias(t, "iris", "champion", 1), setAlias(t, "iris", "challenger", 2))
			},
			cmd: func(t *testing.T) []byte { return setAlias(t, "iris", "champion", 0) },
			check: func(t *testing.T, txn *Txn, index uint64, _ interface{}) {
				assertAliases(t, txn, "iris", map[string]uint64{"challenger": 2})
				if m := mustModel(t, txn, "iris"); m.ModifyIndex != index {
					t.Fatalf("modify index = %d, want %d", m.ModifyIndex, index)
				}
				mustVersion(t, txn, "iris", 1) // the version stays
			},
		},
		{
			name:     "to a missing version",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return setAlias(t, "iris", "champion", 9) },
			wantCode: structs.CodeNotFound,
			wantMsg:  "version 9",
		},
		{
			name:     "to a deleted version",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t, deleteVersion(t, "iris", 2)) },
			cmd:      func(t *testing.T) []byte { return setAlias(t, "iris", "champion", 2) },
			wantCode: structs.CodeNotFound,
		},
		{
			name:     "on a missing model",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return setAlias(t, "rose", "champion", 1) },
			wantCode: structs.CodeNotFound,
			wantMsg:  `model "rose"`,
		},
		{
			name:     "delete a missing alias",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t, setAlias(t, "iris", "champion", 1)) },
			cmd:      func(t *testing.T) []byte { return setAlias(t, "iris", "challenger", 0) },
			wantCode: structs.CodeNotFound,
			wantMsg:  `alias "challenger"`,
		},
		{
			name:     "invalid alias name",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return setAlias(t, "iris", "Champion!", 1) },
			wantCode: structs.CodeInvalid,
			wantMsg:  "alias",
		},
		{
			name:     "empty alias name",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return setAlias(t, "iris", "", 1) },
			wantCode: structs.CodeInvalid,
			wantMsg:  "alias",
		},
		{
			name:     "one alias past the cap",
			setup:    manyAliases,
			cmd:      func(t *testing.T) []byte { return setAlias(t, "iris", "one-more", 1) },
			wantCode: structs.CodeInvalid,
			wantMsg:  "aliases",
		},
		{
			name:  "moving an alias at the cap",
			setup: manyAliases,
			cmd:   func(t *testing.T) []byte { return setAlias(t, "iris", "a00", 3) },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				m := mustModel(t, txn, "iris")
				if len(m.Aliases) != structs.MaxAliases || m.Aliases["a00"] != 3 {
					t.Fatalf("%d aliases, a00 -> %d; want %d and 3", len(m.Aliases), m.Aliases["a00"], structs.MaxAliases)
				}
			},
		},
		{
			name: "model create ignores versions and aliases in the request",
			cmd: func(t *testing.T) []byte {
				return encode(t, structs.ModelCreateType, &structs.ModelCreateRequest{Model: structs.Model{
					Name: "iris", LatestVersion: 5, Aliases: map[string]uint64{"champion": 5}, CreatedAt: t0, UpdatedAt: t0,
				}})
			},
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				m := mustModel(t, txn, "iris")
				if m.LatestVersion != 0 || m.Aliases != nil {
					t.Fatalf("model = %+v, want no versions and no aliases", m)
				}
				if r, ok := res.(*structs.Model); !ok || r.LatestVersion != 0 || r.Aliases != nil {
					t.Fatalf("result = %+v, want no versions and no aliases", res)
				}
			},
		},
	}
	runServingCases(t, tests)
}

func TestFSM_DeploymentPut(t *testing.T) {
	tr1 := trafficOf(split(1, 100))
	tr12 := trafficOf(split(1, 90), split(2, 10))
	invalid := func(name, wantMsg string, change func(d *structs.Deployment)) servingCase {
		return servingCase{
			name:  name,
			setup: func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd: func(t *testing.T) []byte {
				d := deploymentOf("iris", tr12)
				change(&d)
				return encodeDeployment(t, d)
			},
			wantCode: structs.CodeInvalid,
			wantMsg:  wantMsg,
		}
	}
	tests := []servingCase{
		{
			name:  "create",
			setup: func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd: func(t *testing.T) []byte {
				return encodeDeployment(t, deploymentOf("iris", shadowed(tr12, 3)))
			},
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				want := deploymentOf("iris", shadowed(tr12, 3))
				want.CreateIndex, want.ModifyIndex = index, index
				got := mustDeployment(t, txn, "iris")
				if !reflect.DeepEqual(got, &want) {
					t.Fatalf("Deployment = %+v, want %+v", got, &want)
				}
				if !reflect.DeepEqual(res, got) {
					t.Fatalf("result = %+v, want the stored deployment", res)
				}
			},
		},
		{
			name:     "model must exist",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return putDeployment(t, "rose", tr1) },
			wantCode: structs.CodeNotFound,
			wantMsg:  `model "rose"`,
		},
		{
			name:     "weighted version must exist",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return putDeployment(t, "iris", trafficOf(split(1, 50), split(9, 50))) },
			wantCode: structs.CodeNotFound,
			wantMsg:  "version 9",
		},
		{
			name:     "shadow version must exist",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return putDeployment(t, "iris", shadowed(tr1, 7)) },
			wantCode: structs.CodeNotFound,
			wantMsg:  "version 7",
		},
		{
			name:     "deleted version",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t, deleteVersion(t, "iris", 2)) },
			cmd:      func(t *testing.T) []byte { return putDeployment(t, "iris", tr12) },
			wantCode: structs.CodeNotFound,
			wantMsg:  "version 2",
		},
		{
			name: "version of another model",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, createModel(t, "wine", nil), createVersion(t, "wine"))
			},
			cmd:      func(t *testing.T) []byte { return putDeployment(t, "wine", trafficOf(split(2, 1))) },
			wantCode: structs.CodeNotFound,
		},
		{
			name: "failed replace keeps the old deployment",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", tr1))
			},
			cmd:      func(t *testing.T) []byte { return putDeployment(t, "iris", trafficOf(split(8, 1))) },
			wantCode: structs.CodeNotFound,
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				d := mustDeployment(t, txn, "iris")
				assertTraffic(t, d.Traffic, tr1)
				assertHistory(t, d.History)
			},
		},
		invalid("invalid name", "name", func(d *structs.Deployment) { d.Name = "Iris" }),
		invalid("no versions", "versions", func(d *structs.Deployment) { d.Traffic = structs.Traffic{} }),
		invalid("weights sum to 0", "weights add up to 0", func(d *structs.Deployment) {
			d.Traffic = trafficOf(split(1, 0), split(2, 0))
		}),
		invalid("duplicate version", "listed twice", func(d *structs.Deployment) {
			d.Traffic = trafficOf(split(1, 50), split(1, 50))
		}),
		invalid("shadow also weighted", "shadow version 2", func(d *structs.Deployment) { d.Traffic.Shadow = 2 }),
		invalid("version 0", "versions[0].version", func(d *structs.Deployment) { d.Traffic = trafficOf(split(0, 1)) }),
		invalid("negative weight", "versions[1].weight", func(d *structs.Deployment) {
			d.Traffic = trafficOf(split(1, 10), split(2, -1))
		}),
		invalid("no replicas", "replicas", func(d *structs.Deployment) { d.Replicas = 0 }),
		invalid("too many replicas", "replicas", func(d *structs.Deployment) { d.Replicas = structs.MaxReplicas + 1 }),
		invalid("max batch too large", "batching.max_batch", func(d *structs.Deployment) { d.Batching.MaxBatch = 4097 }),
		invalid("negative max batch", "batching.max_batch", func(d *structs.Deployment) { d.Batching.MaxBatch = -1 }),
		invalid("max wait too long", "batching.max_wait_ms", func(d *structs.Deployment) { d.Batching.MaxWaitMS = 1001 }),
		invalid("negative memory", "resources.memory_mb", func(d *structs.Deployment) { d.Resources.MemoryMB = -1 }),
		invalid("too many gpus", "resources.gpus", func(d *structs.Deployment) { d.Resources.GPUs = 65 }),
		{
			name:  "replace with new traffic",
			setup: func(t *testing.T) [][]byte { return irisSetup(t, putDeployment(t, "iris", tr1)) },
			cmd: func(t *testing.T) []byte {
				d := deploymentOf("iris", tr12)
				d.Replicas = 3
				d.CreatedAt, d.UpdatedAt = t0.Add(time.Hour), t0.Add(time.Hour)
				d.CreateIndex = 99
				return encodeDeployment(t, d)
			},
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				d := mustDeployment(t, txn, "iris")
				assertTraffic(t, d.Traffic, tr12)
				assertHistory(t, d.History, tr1)
				if d.CreateIndex != irisEntries+1 || !d.CreatedAt.Equal(t0) {
					t.Fatalf("created at %d, %v; want %d, %v (kept on replace)", d.CreateIndex, d.CreatedAt, irisEntries+1, t0)
				}
				if d.ModifyIndex != index || !d.UpdatedAt.Equal(t0.Add(time.Hour)) || d.Replicas != 3 {
					t.Fatalf("deployment = %+v, want modified at %d, updated at +1h, 3 replicas", d, index)
				}
				if !reflect.DeepEqual(res, d) {
					t.Fatalf("result = %+v, want the stored deployment", res)
				}
			},
		},
		{
			name:  "replace with a new shadow",
			setup: func(t *testing.T) [][]byte { return irisSetup(t, putDeployment(t, "iris", tr1)) },
			cmd:   func(t *testing.T) []byte { return putDeployment(t, "iris", shadowed(tr1, 2)) },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				d := mustDeployment(t, txn, "iris")
				assertTraffic(t, d.Traffic, shadowed(tr1, 2))
				assertHistory(t, d.History, tr1)
			},
		},
		{
			name:  "replace with the same traffic",
			setup: func(t *testing.T) [][]byte { return irisSetup(t, putDeployment(t, "iris", shadowed(tr12, 3))) },
			cmd: func(t *testing.T) []byte {
				d := deploymentOf("iris", shadowed(tr12, 3))
				d.Replicas, d.Batching.MaxBatch = 5, 32
				return encodeDeployment(t, d)
			},
			check: func(t *testing.T, txn *Txn, index uint64, _ interface{}) {
				d := mustDeployment(t, txn, "iris")
				assertHistory(t, d.History)
				if d.Replicas != 5 || d.Batching.MaxBatch != 32 || d.ModifyIndex != index || d.CreateIndex != irisEntries+1 {
					t.Fatalf("deployment = %+v, want 5 replicas, max batch 32, modified at %d", d, index)
				}
			},
		},
		{
			name: "same traffic keeps the history it has",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", tr1), putDeployment(t, "iris", tr12))
			},
			cmd: func(t *testing.T) []byte { return putDeployment(t, "iris", tr12) },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertHistory(t, mustDeployment(t, txn, "iris").History, tr1)
			},
		},
		{
			name:  "history in a create request is ignored",
			setup: func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd: func(t *testing.T) []byte {
				d := deploymentOf("iris", tr1)
				d.History = []structs.Traffic{trafficOf(split(9, 1)), tr12}
				return encodeDeployment(t, d)
			},
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertHistory(t, mustDeployment(t, txn, "iris").History)
			},
		},
		{
			name:  "history in a replace request is ignored",
			setup: func(t *testing.T) [][]byte { return irisSetup(t, putDeployment(t, "iris", tr1)) },
			cmd: func(t *testing.T) []byte {
				d := deploymentOf("iris", tr12)
				d.History = []structs.Traffic{trafficOf(split(9, 1)), trafficOf(split(3, 1))}
				return encodeDeployment(t, d)
			},
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertHistory(t, mustDeployment(t, txn, "iris").History, tr1)
			},
		},
		{
			name: "history is bounded",
			setup: func(t *testing.T) [][]byte {
				var puts [][]byte
				for w := 1; w <= structs.MaxRollbackHistory+2; w++ {
					puts = append(puts, putDeployment(t, "iris", trafficOf(split(1, w))))
				}
				return irisSetup(t, puts...)
			},
			cmd: func(t *testing.T) []byte {
				return putDeployment(t, "iris", trafficOf(split(1, structs.MaxRollbackHistory+3)))
			},
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				// Traffic had weights 1..18; the oldest two fell off.
				var want []structs.Traffic
				for w := 3; w <= structs.MaxRollbackHistory+2; w++ {
					want = append(want, trafficOf(split(1, w)))
				}
				d := mustDeployment(t, txn, "iris")
				assertHistory(t, d.History, want...)
				assertTraffic(t, d.Traffic, trafficOf(split(1, structs.MaxRollbackHistory+3)))
			},
		},
	}
	runServingCases(t, tests)
}

func TestFSM_DeploymentRollback(t *testing.T) {
	trA := trafficOf(split(1, 100))
	trB := shadowed(trafficOf(split(1, 50), split(2, 50)), 3)
	trC := trafficOf(split(3, 100))
	tests := []servingCase{
		{
			name: "restores the previous traffic",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", trA), putDeployment(t, "iris", trB))
			},
			cmd: func(t *testing.T) []byte { return rollbackDeployment(t, "iris") },
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				d := mustDeployment(t, txn, "iris")
				assertTraffic(t, d.Traffic, trA)
				assertHistory(t, d.History)
				if d.ModifyIndex != index || d.CreateIndex != irisEntries+1 || !d.UpdatedAt.Equal(rollbackTime) || !d.CreatedAt.Equal(t0) {
					t.Fatalf("deployment = %+v, want modified at %d, updated at %v", d, index, rollbackTime)
				}
				if !reflect.DeepEqual(res, d) {
					t.Fatalf("result = %+v, want the stored deployment", res)
				}
			},
		},
		{
			name: "walks back one step at a time",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", trA), putDeployment(t, "iris", trB),
					putDeployment(t, "iris", trC), rollbackDeployment(t, "iris"))
			},
			cmd: func(t *testing.T) []byte { return rollbackDeployment(t, "iris") },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				d := mustDeployment(t, txn, "iris")
				assertTraffic(t, d.Traffic, trA)
				assertHistory(t, d.History)
			},
		},
		{
			name: "one step back leaves the rest",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", trA), putDeployment(t, "iris", trB),
					putDeployment(t, "iris", trC))
			},
			cmd: func(t *testing.T) []byte { return rollbackDeployment(t, "iris") },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				d := mustDeployment(t, txn, "iris")
				assertTraffic(t, d.Traffic, trB)
				assertHistory(t, d.History, trA)
			},
		},
		{
			name:     "empty history",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t, putDeployment(t, "iris", trA)) },
			cmd:      func(t *testing.T) []byte { return rollbackDeployment(t, "iris") },
			wantCode: structs.CodeConflict,
			wantMsg:  "no earlier traffic",
		},
		{
			name: "history used up",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", trA), putDeployment(t, "iris", trB), rollbackDeployment(t, "iris"))
			},
			cmd:      func(t *testing.T) []byte { return rollbackDeployment(t, "iris") },
			wantCode: structs.CodeConflict,
		},
		{
			name:     "missing deployment",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t) },
			cmd:      func(t *testing.T) []byte { return rollbackDeployment(t, "iris") },
			wantCode: structs.CodeNotFound,
			wantMsg:  `deployment "iris"`,
		},
		{
			name: "to traffic whose version was deleted",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", trA), putDeployment(t, "iris", trC), deleteVersion(t, "iris", 1))
			},
			cmd:      func(t *testing.T) []byte { return rollbackDeployment(t, "iris") },
			wantCode: structs.CodeNotFound,
			wantMsg:  "cannot roll back",
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				d := mustDeployment(t, txn, "iris")
				assertTraffic(t, d.Traffic, trC)
				assertHistory(t, d.History, trA)
			},
		},
		{
			name: "to traffic whose shadow version was deleted",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", shadowed(trA, 2)), putDeployment(t, "iris", trA),
					deleteVersion(t, "iris", 2))
			},
			cmd:      func(t *testing.T) []byte { return rollbackDeployment(t, "iris") },
			wantCode: structs.CodeNotFound,
			wantMsg:  "version 2",
		},
	}
	runServingCases(t, tests)
}

func TestFSM_DeploymentDelete(t *testing.T) {
	// Allocation IDs interleave the two deployments, so that a delete by range
	// would show.
	setup := func(t *testing.T) [][]byte {
		return irisSetup(t,
			createModel(t, "wine", nil), createVersion(t, "wine"),
			putDeployment(t, "iris", trafficOf(split(1, 50), split(2, 50))),
			putDeployment(t, "wine", trafficOf(split(1, 100))),
			planAllocs(t, []structs.Allocation{
				allocOf("a1", "iris", 1, "node-1"),
				allocOf("b1", "wine", 1, "node-1"),
				allocOf("c1", "iris", 2, "node-2"),
			}))
	}
	tests := []servingCase{
		{
			name:  "removes its allocations and only its",
			setup: setup,
			cmd:   func(t *testing.T) []byte { return deleteDeployment(t, "iris") },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				if res != nil {
					t.Fatalf("result = %v, want nil", res)
				}
				assertNoDeployment(t, txn, "iris")
				mustDeployment(t, txn, "wine")
				if got := allocIDs(t, txn); !reflect.DeepEqual(got, []string{"b1"}) {
					t.Fatalf("allocations = %v, want [b1]", got)
				}
				// The model and its versions stay.
				mustModel(t, txn, "iris")
				if got := versionNumbers(t, txn, "iris"); !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
					t.Fatalf("versions = %v, want [1 2 3]", got)
				}
			},
		},
		{
			name:  "deployment without allocations",
			setup: func(t *testing.T) [][]byte { return irisSetup(t, putDeployment(t, "iris", trafficOf(split(1, 1)))) },
			cmd:   func(t *testing.T) []byte { return deleteDeployment(t, "iris") },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertNoDeployment(t, txn, "iris")
			},
		},
		{
			name:     "missing deployment",
			setup:    setup,
			cmd:      func(t *testing.T) []byte { return deleteDeployment(t, "rose") },
			wantCode: structs.CodeNotFound,
			wantMsg:  `deployment "rose"`,
		},
	}
	runServingCases(t, tests)
}

func TestFSM_ModelDeleteWithServing(t *testing.T) {
	tests := []servingCase{
		{
			name:     "refused while deployed",
			setup:    func(t *testing.T) [][]byte { return irisSetup(t, putDeployment(t, "iris", trafficOf(split(1, 1)))) },
			cmd:      func(t *testing.T) []byte { return deleteModel(t, "iris") },
			wantCode: structs.CodeConflict,
			wantMsg:  "deployed",
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				mustModel(t, txn, "iris")
				mustVersion(t, txn, "iris", 1)
			},
		},
		{
			name: "deletes its versions and no other model's",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{
					createModel(t, "a", nil), createModel(t, "a.b", nil), createModel(t, "ab", nil), createModel(t, "a-", nil),
					createVersion(t, "a"), createVersion(t, "a.b"), createVersion(t, "a"), createVersion(t, "ab"),
					createVersion(t, "a-"),
				}
			},
			cmd: func(t *testing.T) []byte { return deleteModel(t, "a") },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				if res != nil {
					t.Fatalf("result = %v, want nil", res)
				}
				assertNoModel("a")(t, txn, nil)
				assertNoVersion(t, txn, "a", 1)
				assertNoVersion(t, txn, "a", 2)
				var left []string
				must(t, txn.AllVersions(func(v *structs.ModelVersion) {
					left = append(left, v.Model+"/"+strconv.FormatUint(v.Version, 10))
				}))
				if want := []string{"a-/1", "a.b/1", "ab/1"}; !reflect.DeepEqual(left, want) {
					t.Fatalf("versions left = %v, want %v", left, want)
				}
			},
		},
		{
			name: "allowed once the deployment is gone",
			setup: func(t *testing.T) [][]byte {
				return irisSetup(t, putDeployment(t, "iris", trafficOf(split(1, 1))),
					planAllocs(t, []structs.Allocation{allocOf("a1", "iris", 1, "node-1")}),
					deleteDeployment(t, "iris"))
			},
			cmd: func(t *testing.T) []byte { return deleteModel(t, "iris") },
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				assertNoModel("iris")(t, txn, nil)
				for v := uint64(1); v <= 3; v++ {
					assertNoVersion(t, txn, "iris", v)
				}
				if ids := allocIDs(t, txn); len(ids) != 0 {
					t.Fatalf("allocations = %v, want none", ids)
				}
			},
		},
		{
			name: "versions created in the same batch go too",
			setup: func(t *testing.T) [][]byte {
				return [][]byte{createModel(t, "iris", nil), createVersion(t, "iris"), createVersion(t, "iris")}
			},
			cmd: func(t *testing.T) []byte {
				return group(t, createVersion(t, "iris"), deleteModel(t, "iris"))
			},
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				if results, ok := res.([]interface{}); !ok || len(results) != 2 || codeOf(results[0]) != "" || codeOf(results[1]) != "" {
					t.Fatalf("result = %#v, want two successes", res)
				}
				var n int
				must(t, txn.AllVersions(func(*structs.ModelVersion) { n++ }))
				if n != 0 {
					t.Fatalf("%d versions left, want 0", n)
				}
			},
		},
	}
	runServingCases(t, tests)
}

func TestFSM_AllocPlan(t *testing.T) {
	// iris serves 1 and 2 by weight and 3 as shadow; the deployment is entry 7.
	setup := func(t *testing.T, more ...[]byte) [][]byte {
		return irisSetup(t, append([][]byte{
			putDeployment(t, "iris", shadowed(trafficOf(split(1, 90), split(2, 10)), 3)),
		}, more...)...)
	}
	good := allocOf("a1", "iris", 1, "node-1")
	rejects := func(name, wantCode, wantMsg string, bad structs.Allocation) servingCase {
		return servingCase{
			name: name,
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{allocOf("a0", "iris", 2, "node-2")}))
			},
			// A remove of an existing allocation and a good add come first: the
			// plan is all or nothing.
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{good, bad}, "a0")
			},
			wantCode: wantCode,
			wantMsg:  wantMsg,
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				if got := allocIDs(t, txn); !reflect.DeepEqual(got, []string{"a0"}) {
					t.Fatalf("allocations = %v, want just a0", got)
				}
			},
		}
	}
	tests := []servingCase{
		{
			name: "adds are pending at the entry's index",
			// node-1 has GPUs 0 and 1 for a1 to hold.
			setup: func(t *testing.T) [][]byte { return setup(t, gpuNode(t, "node-1", 0, 2)) },
			cmd: func(t *testing.T) []byte {
				a := allocOf("a1", "iris", 1, "node-1")
				a.State, a.Message, a.CreateIndex, a.ModifyIndex, a.GPUs = structs.AllocRunning, "lies", 99, 99, []int{0, 1}
				return planAllocs(t, []structs.Allocation{a, allocOf("a2", "iris", 3, "node-2")})
			},
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				if res != nil {
					t.Fatalf("result = %v, want nil", res)
				}
				want := allocOf("a1", "iris", 1, "node-1")
				want.State, want.CreateIndex, want.ModifyIndex, want.GPUs = structs.AllocPending, index, index, []int{0, 1}
				if got := mustAlloc(t, txn, "a1"); !reflect.DeepEqual(got, &want) {
					t.Fatalf("a1 = %+v, want %+v", got, &want)
				}
				if a2 := mustAlloc(t, txn, "a2"); a2.Version != 3 || a2.State != structs.AllocPending || a2.CreateIndex != index {
					t.Fatalf("a2 = %+v, want shadow version 3 pending at %d", a2, index)
				}
			},
		},
		rejects("unknown node", structs.CodeNotFound, `node "node-9"`, allocOf("a2", "iris", 1, "node-9")),
		rejects("unknown deployment", structs.CodeNotFound, `deployment "rose"`, allocOf("a2", "rose", 1, "node-1")),
		rejects("version not served", structs.CodeInvalid, "does not serve version 4", allocOf("a2", "iris", 4, "node-1")),
		rejects("version 0", structs.CodeInvalid, "does not serve version 0", allocOf("a2", "iris", 0, "node-1")),
		rejects("duplicate id in the plan", structs.CodeConflict, `"a1" exists`, allocOf("a1", "iris", 2, "node-2")),
		rejects("empty id", structs.CodeInvalid, "add[1].id", allocOf("", "iris", 1, "node-1")),
		rejects("id with a slash", structs.CodeInvalid, "add[1].id", allocOf("a/2", "iris", 1, "node-1")),
		rejects("id too long", structs.CodeInvalid, "add[1].id", allocOf(strings.Repeat("x", 65), "iris", 1, "node-1")),
		{
			name: "id that exists",
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{allocOf("a0", "iris", 2, "node-2")}))
			},
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{good, allocOf("a0", "iris", 1, "node-1")})
			},
			wantCode: structs.CodeConflict,
			wantMsg:  `"a0" exists`,
		},
		{
			name:  "id of 64 bytes",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{allocOf(strings.Repeat("x", 64), "iris", 1, "node-1")})
			},
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				mustAlloc(t, txn, strings.Repeat("x", 64))
			},
		},
		{
			name: "version no longer served",
			setup: func(t *testing.T) [][]byte {
				return setup(t, putDeployment(t, "iris", trafficOf(split(2, 1))))
			},
			cmd:      func(t *testing.T) []byte { return planAllocs(t, []structs.Allocation{good}) },
			wantCode: structs.CodeInvalid,
		},
		{
			name: "removes skip missing ids",
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{
					allocOf("a0", "iris", 1, "node-1"), allocOf("a1", "iris", 2, "node-2"),
				}))
			},
			cmd: func(t *testing.T) []byte { return planAllocs(t, nil, "gone", "a0", "a0", "") },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				if res != nil {
					t.Fatalf("result = %v, want nil", res)
				}
				if got := allocIDs(t, txn); !reflect.DeepEqual(got, []string{"a1"}) {
					t.Fatalf("allocations = %v, want [a1]", got)
				}
			},
		},
		{
			name: "remove and add the same id",
			setup: func(t *testing.T) [][]byte {
				return setup(t, planAllocs(t, []structs.Allocation{allocOf("a0", "iris", 1, "node-1")}))
			},
			cmd: func(t *testing.T) []byte {
				return planAllocs(t, []structs.Allocation{allocOf("a0", "iris", 2, "node-2")}, "a0")
			},
			check: func(t *testing.T, txn *Txn, index uint64, _ interface{}) {
				if a := mustAlloc(t, txn, "a0"); a.NodeID != "node-2" || a.Version != 2 || a.CreateIndex != index {
					t.Fatalf("a0 = %+v, want the new one on node-2 created at %d", a, index)
				}
			},
		},
		{
			name:     "body that does not decode",
			setup:    func(t *testing.T) [][]byte { return setup(t) },
			cmd:      func(t *testing.T) []byte { return []byte{byte(structs.AllocPlanFitType), 0xc1} },
			wantCode: structs.CodeInvalid,
		},
	}
	runServingCases(t, tests)
}

func TestFSM_AllocStatus(t *testing.T) {
	// Allocations a1 and a3 run on node-1, a2 on node-2; the plan is entry 8.
	setup := func(t *testing.T, more ...[]byte) [][]byte {
		return irisSetup(t, append([][]byte{
			putDeployment(t, "iris", trafficOf(split(1, 90), split(2, 10))),
			planAllocs(t, []structs.Allocation{
				allocOf("a1", "iris", 1, "node-1"), allocOf("a2", "iris", 2, "node-2"), allocOf("a3", "iris", 2, "node-1"),
			}),
		}, more...)...)
	}
	const planIndex = irisEntries + 2
	long := strings.Repeat("x", structs.MaxAllocMessageLen+500)
	assertApplied := func(t *testing.T, res interface{}, want int) {
		t.Helper()
		if n, ok := res.(int); !ok || n != want {
			t.Fatalf("result = %#v, want %d applied", res, want)
		}
	}
	assertUntouched := func(t *testing.T, txn *Txn, ids ...string) {
		t.Helper()
		for _, id := range ids {
			if a := mustAlloc(t, txn, id); a.State != structs.AllocPending || a.Message != "" || a.ModifyIndex != planIndex {
				t.Fatalf("%s = %+v, want it pending as placed", id, a)
			}
		}
	}
	tests := []servingCase{
		{
			name:  "the owner's report applies",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd:   func(t *testing.T) []byte { return reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "")) },
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				assertApplied(t, res, 1)
				if a := mustAlloc(t, txn, "a1"); a.State != structs.AllocRunning || a.ModifyIndex != index || a.CreateIndex != planIndex {
					t.Fatalf("a1 = %+v, want running, modified at %d", a, index)
				}
				assertUntouched(t, txn, "a2", "a3")
			},
		},
		{
			name:  "another node's report is skipped",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return reportAllocs(t, report("a1", "node-2", structs.AllocFailed, "not mine"))
			},
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				assertApplied(t, res, 0)
				assertUntouched(t, txn, "a1", "a2", "a3")
			},
		},
		{
			name:  "unknown ids and states are skipped",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				return reportAllocs(t,
					report("a1", "node-1", structs.AllocRunning, ""),
					report("zz", "node-1", structs.AllocRunning, ""),
					report("a2", "node-2", "exploded", "boom"),
					report("a2", "node-2", "", ""),
					report("a3", "node-1", structs.AllocFailed, "out of memory"))
			},
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				assertApplied(t, res, 2)
				if a := mustAlloc(t, txn, "a3"); a.State != structs.AllocFailed || a.Message != "out of memory" || a.ModifyIndex != index {
					t.Fatalf("a3 = %+v, want failed with its message", a)
				}
				if a := mustAlloc(t, txn, "a1"); a.State != structs.AllocRunning {
					t.Fatalf("a1 = %+v, want running", a)
				}
				assertUntouched(t, txn, "a2")
				if got := allocIDs(t, txn); !reflect.DeepEqual(got, []string{"a1", "a2", "a3"}) {
					t.Fatalf("allocations = %v, want a1 a2 a3 (no record made for zz)", got)
				}
			},
		},
		{
			name: "an unchanged report applies nothing",
			setup: func(t *testing.T) [][]byte {
				return setup(t, reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "ok")))
			},
			cmd: func(t *testing.T) []byte { return reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "ok")) },
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				assertApplied(t, res, 0)
				if a := mustAlloc(t, txn, "a1"); a.ModifyIndex != index-1 {
					t.Fatalf("a1 modified at %d, want %d", a.ModifyIndex, index-1)
				}
			},
		},
		{
			name: "a new message alone applies",
			setup: func(t *testing.T) [][]byte {
				return setup(t, reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "ok")))
			},
			cmd: func(t *testing.T) []byte { return reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "")) },
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				assertApplied(t, res, 1)
				if a := mustAlloc(t, txn, "a1"); a.Message != "" || a.ModifyIndex != index {
					t.Fatalf("a1 = %+v, want no message, modified at %d", a, index)
				}
			},
		},
		{
			name: "a failed replica may report again",
			setup: func(t *testing.T) [][]byte {
				return setup(t, reportAllocs(t, report("a1", "node-1", structs.AllocFailed, "crashed")))
			},
			cmd: func(t *testing.T) []byte { return reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "")) },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				assertApplied(t, res, 1)
				if a := mustAlloc(t, txn, "a1"); a.State != structs.AllocRunning {
					t.Fatalf("a1 = %+v, want running", a)
				}
			},
		},
		{
			name:  "a long message is truncated",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd:   func(t *testing.T) []byte { return reportAllocs(t, report("a1", "node-1", structs.AllocFailed, long)) },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				assertApplied(t, res, 1)
				if a := mustAlloc(t, txn, "a1"); a.Message != long[:structs.MaxAllocMessageLen] {
					t.Fatalf("message is %d bytes, want the first %d", len(a.Message), structs.MaxAllocMessageLen)
				}
			},
		},
		{
			name: "a repeated long message applies nothing",
			setup: func(t *testing.T) [][]byte {
				return setup(t, reportAllocs(t, report("a1", "node-1", structs.AllocFailed, long)))
			},
			cmd: func(t *testing.T) []byte { return reportAllocs(t, report("a1", "node-1", structs.AllocFailed, long)) },
			check: func(t *testing.T, txn *Txn, index uint64, res interface{}) {
				assertApplied(t, res, 0)
				if a := mustAlloc(t, txn, "a1"); a.ModifyIndex != index-1 {
					t.Fatalf("a1 modified at %d, want %d", a.ModifyIndex, index-1)
				}
			},
		},
		{
			name:  "truncation keeps the message valid UTF-8",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd: func(t *testing.T) []byte {
				// 1 + 2k bytes: byte 1024 is in the middle of an "é".
				return reportAllocs(t, report("a1", "node-1", structs.AllocFailed, "x"+strings.Repeat("é", structs.MaxAllocMessageLen)))
			},
			check: func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
				msg := mustAlloc(t, txn, "a1").Message
				if !utf8.ValidString(msg) || len(msg) > structs.MaxAllocMessageLen || len(msg) < structs.MaxAllocMessageLen-utf8.UTFMax {
					t.Fatalf("message of %d bytes, valid UTF-8 %v; want up to %d valid bytes", len(msg), utf8.ValidString(msg), structs.MaxAllocMessageLen)
				}
			},
		},
		{
			name:  "allocation of a deleted deployment",
			setup: func(t *testing.T) [][]byte { return setup(t, deleteDeployment(t, "iris")) },
			cmd:   func(t *testing.T) []byte { return reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "")) },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				assertApplied(t, res, 0)
				if ids := allocIDs(t, txn); len(ids) != 0 {
					t.Fatalf("allocations = %v, want none", ids)
				}
			},
		},
		{
			name:  "no updates",
			setup: func(t *testing.T) [][]byte { return setup(t) },
			cmd:   func(t *testing.T) []byte { return reportAllocs(t) },
			check: func(t *testing.T, txn *Txn, _ uint64, res interface{}) {
				assertApplied(t, res, 0)
			},
		},
	}
	runServingCases(t, tests)
}

func TestFSM_VersionsPaging(t *testing.T) {
	f := testFSM(t)
	data := [][]byte{createModel(t, "iris", nil), createModel(t, "iris2", nil)}
	for range 12 {
		data = append(data, createVersion(t, "iris"))
	}
	data = append(data, createVersion(t, "iris2"), deleteVersion(t, "iris", 3))
	mustApply(t, f, 1, data...)

	tests := []struct {
		name     string
		model    string
		cursor   string
		limit    int
		want     []uint64
		wantNext string
		wantCode string
	}{
		{name: "all", model: "iris", want: []uint64{1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{name: "first page", model: "iris", limit: 3, want: []uint64{1, 2, 4}, wantNext: "4"},
		{name: "next page", model: "iris", cursor: "4", limit: 3, want: []uint64{5, 6, 7}, wantNext: "7"},
		{name: "numeric order past 9", model: "iris", cursor: "8", want: []uint64{9, 10, 11, 12}},
		{name: "exact last page", model: "iris", cursor: "9", limit: 3, want: []uint64{10, 11, 12}},
		{name: "cursor on a deleted version", model: "iris", cursor: "2", limit: 1, want: []uint64{4}, wantNext: "4"},
		{name: "cursor past the end", model: "iris", cursor: "12"},
		{name: "other model", model: "iris2", want: []uint64{1}},
		{name: "missing model", model: "rose"},
		{name: "bad cursor", model: "iris", cursor: "v3", wantCode: structs.CodeInvalid},
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, next, err := txn.Versions(tt.model, tt.cursor, tt.limit)
			if tt.wantCode != "" {
				if structs.ErrorCode(err) != tt.wantCode {
					t.Fatalf("Versions = %v, want code %q", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, v := range items {
				if v.Model != tt.model {
					t.Fatalf("Versions(%q) returned a version of %q", tt.model, v.Model)
				}
				got = append(got, v.Version)
			}
			if !reflect.DeepEqual(got, tt.want) || next != tt.wantNext {
				t.Fatalf("Versions(%q, %q, %d) = %v, next %q; want %v, next %q", tt.model, tt.cursor, tt.limit, got, next, tt.want, tt.wantNext)
			}
		})
	}
}

func TestFSM_DeploymentsPaging(t *testing.T) {
	f := testFSM(t)
	names := []string{"m3", "m1", "m4", "m2"}
	var data [][]byte
	for _, n := range names {
		data = append(data, createModel(t, n, nil), createVersion(t, n), putDeployment(t, n, trafficOf(split(1, 1))))
	}
	mustApply(t, f, 1, data...)
	tests := []struct {
		name     string
		cursor   string
		limit    int
		want     []string
		wantNext string
	}{
		{name: "all", want: []string{"m1", "m2", "m3", "m4"}},
		{name: "first page", limit: 2, want: []string{"m1", "m2"}, wantNext: "m2"},
		{name: "last page", cursor: "m2", limit: 2, want: []string{"m3", "m4"}},
		{name: "past the end", cursor: "m4"},
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, next, err := txn.Deployments(tt.cursor, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range items {
				got = append(got, d.Name)
			}
			if !reflect.DeepEqual(got, tt.want) || next != tt.wantNext {
				t.Fatalf("Deployments(%q, %d) = %v, next %q; want %v, next %q", tt.cursor, tt.limit, got, next, tt.want, tt.wantNext)
			}
		})
	}
}

func TestTxn_ServingReadsNotFound(t *testing.T) {
	f := testFSM(t)
	mustApply(t, f, 1, irisSetup(t)...)
	txn := f.ReadTxn()
	defer txn.Discard()
	if _, err := txn.Version("iris", 4); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("Version(iris, 4) = %v, want not_found", err)
	}
	if _, err := txn.Deployment("iris"); structs.ErrorCode(err) != structs.CodeNotFound {
		t.Fatalf("Deployment(iris) = %v, want not_found", err)
	}
	txn.Discard()
	if _, err := txn.Version("iris", 1); !errors.Is(err, ErrTxnDiscarded) {
		t.Fatalf("Version after Discard = %v, want ErrTxnDiscarded", err)
	}
	if _, err := txn.Allocations(); !errors.Is(err, ErrTxnDiscarded) {
		t.Fatalf("Allocations after Discard = %v, want ErrTxnDiscarded", err)
	}
}

// servingEntries is a history that touches every serving command, including
// rejected entries and a BatchType entry, for the snapshot and determinism tests.
func servingEntries(t testing.TB) [][]byte {
	pv := processVersion("wine")
	pv.Metadata = map[string]string{"z": "1", "y": "2", "x": "3", "w": "4"}
	return [][]byte{
		createModel(t, "iris", map[string]string{"task": "classification", "b": "2"}),
		createModel(t, "wine", nil),
		createModel(t, "gone", nil),
		upsertNode(t, "node-1", 8),
		upsertNode(t, "node-2", 16),
		createVersion(t, "iris"),
		createVersion(t, "iris"),
		createVersion(t, "iris"),
		encodeVersion(t, pv),
		createVersion(t, "gone"),
		createVersion(t, "rose"), // rejected: no such model
		// TestFSM_AliasesStoreDeterministically covers several aliases.
		setAlias(t, "iris", "champion", 2),
		setAlias(t, "iris", "first", 1),
		setAlias(t, "iris", "first", 0),
		setAlias(t, "iris", "gone", 9), // rejected: no such version
		putDeployment(t, "iris", trafficOf(split(1, 80), split(2, 20))),
		putDeployment(t, "iris", shadowed(trafficOf(split(1, 50), split(2, 50)), 3)),
		putDeployment(t, "wine", trafficOf(split(1, 100))),
		putDeployment(t, "gone", trafficOf(split(1, 100))),
		createVersion(t, "iris"),
		deleteVersion(t, "iris", 4),
		deleteVersion(t, "iris", 1), // rejected: deployed
		planAllocs(t, []structs.Allocation{
			allocOf("01j0a", "iris", 1, "node-1"),
			allocOf("01j0b", "iris", 2, "node-2"),
			allocOf("01j0c", "iris", 3, "node-1"),
			allocOf("01j0d", "wine", 1, "node-2"),
			allocOf("01j0e", "gone", 1, "node-2"),
		}),
		planAllocs(t, []structs.Allocation{allocOf("01j0f", "iris", 9, "node-1")}), // rejected
		reportAllocs(t,
			report("01j0a", "node-1", structs.AllocRunning, ""),
			report("01j0d", "node-2", structs.AllocFailed, "load failed"),
			report("01j0b", "node-1", structs.AllocRunning, "")), // not node-1's
		group(t,
			encodeDeployment(t, deploymentOf("wine", trafficOf(split(1, 100)))),
			planAllocs(t, []structs.Allocation{allocOf("01j0g", "wine", 1, "node-1")}, "01j0d"),
			deleteDeployment(t, "gone"),
			deleteModel(t, "gone"),
		),
		rollbackDeployment(t, "wine"), // rejected: no history
		updateModel(t, "iris", map[string]*string{"b": nil, "c": ptr("3")}),
	}
}

// wantServingEntries checks the state servingEntries leaves.
func wantServingEntries(t *testing.T, st servingState) {
	t.Helper()
	var versions []string
	for _, v := range st.Versions {
		versions = append(versions, v.Model+"/"+strconv.FormatUint(v.Version, 10))
	}
	if want := []string{"iris/1", "iris/2", "iris/3", "wine/1"}; !reflect.DeepEqual(versions, want) {
		t.Fatalf("versions = %v, want %v", versions, want)
	}
	if len(st.Models) != 2 || len(st.Nodes) != 2 || len(st.Deployments) != 2 {
		t.Fatalf("%d models, %d nodes, %d deployments; want 2, 2, 2", len(st.Models), len(st.Nodes), len(st.Deployments))
	}
	if iris := st.Models[0]; iris.LatestVersion != 4 || !reflect.DeepEqual(map[string]uint64(iris.Aliases), map[string]uint64{"champion": 2}) {
		t.Fatalf("iris = %+v, want latest version 4 and alias champion -> 2", iris)
	}
	if d := st.Deployments[0]; d.Name != "iris" || len(d.History) != 1 || d.Traffic.Shadow != 3 {
		t.Fatalf("deployment iris = %+v, want shadow 3 and one earlier traffic", d)
	}
	var allocs []string
	for _, a := range st.Allocations {
		allocs = append(allocs, a.ID+":"+a.State)
	}
	if want := []string{"01j0a:running", "01j0b:pending", "01j0c:pending", "01j0g:pending"}; !reflect.DeepEqual(allocs, want) {
		t.Fatalf("allocations = %v, want %v", allocs, want)
	}
}

func TestFSM_ServingSnapshotRestore(t *testing.T) {
	tests := []struct {
		name   string
		target func(t *testing.T) []fsmOption
	}{
		{name: "memory to memory", target: func(*testing.T) []fsmOption { return nil }},
		{name: "memory to disk", target: func(t *testing.T) []fsmOption { return []fsmOption{onDisk(t.TempDir())} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := testFSM(t)
			entries := servingEntries(t)
			src.ApplyBatch(commandLogs(1, entries...))
			want := readServingState(t, src)
			wantServingEntries(t, want)
			stream := snapshotBytes(t, src)

			// The target holds serving records of its own, which must not survive.
			dst := testFSM(t, tt.target(t)...)
			fillTarget(t, dst)
			mustApply(t, dst, 21,
				createVersion(t, "other"),
				putDeployment(t, "other", trafficOf(split(1, 1))),
				planAllocs(t, []structs.Allocation{allocOf("zz", "other", 1, "node-9")}),
				setAlias(t, "other", "champion", 1))
			must(t, restoreBytes(dst, stream))
			assertSameServingState(t, want, readServingState(t, dst))
			if again := snapshotBytes(t, dst); !bytes.Equal(again, stream) {
				t.Fatal("snapshot of the restored state differs from the one restored")
			}

			// Entries after the snapshot see the restored records.
			next := uint64(len(entries) + 1)
			results := dst.ApplyBatch(commandLogs(next,
				createVersion(t, "iris"),
				rollbackDeployment(t, "iris"),
				reportAllocs(t, report("01j0c", "node-1", structs.AllocRunning, "")),
				deleteVersion(t, "iris", 3),
			))
			if v, ok := results[0].(*structs.ModelVersion); !ok || v.Version != 5 {
				t.Fatalf("version create after restore = %+v, want version 5", results[0])
			}
			if d, ok := results[1].(*structs.Deployment); !ok || d.Traffic.Shadow != 0 || len(d.History) != 0 {
				t.Fatalf("rollback after restore = %+v, want the first traffic", results[1])
			}
			if n, ok := results[2].(int); !ok || n != 1 {
				t.Fatalf("alloc status after restore = %#v, want 1", results[2])
			}
			if codeOf(results[3]) != "" {
				t.Fatalf("delete of a version no longer served = %v", results[3])
			}
		})
	}
}

// Every node applies the same entries, batched as its raft happens to batch
// them, and must hold the same bytes.
func TestFSM_ServingDeterminism(t *testing.T) {
	entries := func(t *testing.T) [][]byte { return servingEntries(t) }
	tests := []struct {
		name      string
		batchSize int // 0: all in one batch
		opts      func(t *testing.T) []fsmOption
	}{
		{name: "one batch"},
		{name: "one entry per batch", batchSize: 1},
		{name: "batches of three", batchSize: 3},
		{name: "batches of five on disk", batchSize: 5, opts: func(t *testing.T) []fsmOption { return []fsmOption{onDisk(t.TempDir())} }},
	}
	ref := testFSM(t)
	refResults := ref.ApplyBatch(commandLogs(1, entries(t)...))
	want := snapshotBytes(t, ref)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Several runs, so that an effect of map order has its chances to show.
			for run := range 3 {
				var opts []fsmOption
				if tt.opts != nil {
					opts = tt.opts(t)
				}
				f := testFSM(t, opts...)
				data := entries(t)
				logs := commandLogs(1, data...)
				size := tt.batchSize
				if size == 0 {
					size = len(logs)
				}
				var results []interface{}
				for start := 0; start < len(logs); start += size {
					results = append(results, f.ApplyBatch(logs[start:min(start+size, len(logs))])...)
				}
				for i := range results {
					if codeOf(results[i]) != codeOf(refResults[i]) {
						t.Fatalf("run %d, entry %d: result %v, reference %v", run, i+1, results[i], refResults[i])
					}
				}
				if got := snapshotBytes(t, f); !bytes.Equal(got, want) {
					t.Fatalf("run %d: snapshot differs from the reference (%d vs %d bytes)", run, len(got), len(want))
				}
			}
		})
	}
}

// Stored records must be the same bytes on every node (encodeRecord sorts map
// keys for that). A model with several aliases is the case to watch.
func TestFSM_AliasesStoreDeterministically(t *testing.T) {
	// msgpack v5.4.1's SetSortMapKeys sorts only map[string]string, map[string]bool
	// and map[string]interface{}; Model.Aliases is a structs.VersionMap, which
	// sorts its keys itself.
	data := [][]byte{createModel(t, "iris", nil), createVersion(t, "iris")}
	for _, a := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		data = append(data, setAlias(t, "iris", a, 1))
	}
	ref := testFSM(t)
	mustApply(t, ref, 1, data...)
	want := snapshotBytes(t, ref)
	for run := range 10 {
		f := testFSM(t)
		mustApply(t, f, 1, data...)
		if got := snapshotBytes(t, f); !bytes.Equal(got, want) {
			t.Fatalf("run %d: snapshot differs from the reference", run)
		}
	}
}

// A replayed serving entry is skipped: version numbers and allocations are not
// handed out twice.
func TestFSM_ServingReplayIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	logs := commandLogs(1, servingEntries(t)...)
	f1, err := New(Config{Dir: dir})
	must(t, err)
	f1.ApplyBatch(logs)
	want := readServingState(t, f1)
	must(t, f1.Close())

	f2 := testFSM(t, onDisk(dir))
	for i, res := range f2.ApplyBatch(logs) {
		if res != nil {
			t.Fatalf("replayed entry %d: result %v, want nil (skipped)", i+1, res)
		}
	}
	assertSameServingState(t, want, readServingState(t, f2))
}

// The serving tables' index moves with what routing reads and stays put for other writes,
// so the ingress's cache survives registry traffic that does not concern it.
func TestFSM_ServingTablesMoveOnlyWithServingChanges(t *testing.T) {
	f := testFSM(t)
	setup := irisSetup(t, putDeployment(t, "iris", trafficOf(split(1, 100))))
	mustApply(t, f, 1, setup...)
	idx := uint64(len(setup))
	if got := f.Index(ServingTables...); got != idx {
		t.Fatalf("serving index after setup = %d, want %d", got, idx)
	}
	tag := "prod"
	for _, tc := range []struct {
		name  string
		entry []byte
		moves bool
	}{
		{"model tags", updateModel(t, "iris", map[string]*string{"stage": &tag}), false},
		{"node record", upsertNode(t, "node-3", 4), false},
		{"another model", createModel(t, "other", nil), true},
		{"alias", setAlias(t, "iris", "champion", 1), true},
		{"version", createVersion(t, "iris"), true},
		{"deployment", putDeployment(t, "iris", trafficOf(split(2, 100))), true},
		{"allocation", planAllocs(t, []structs.Allocation{allocOf("a1", "iris", 2, "node-1")}), true},
		{"replica state", reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "")), true},
		{"rejected command", deleteDeployment(t, "nosuch"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.Index(ServingTables...)
			idx++
			f.ApplyBatch(commandLogs(idx, tc.entry))
			if f.AppliedIndex() != idx {
				t.Fatalf("AppliedIndex = %d, want %d", f.AppliedIndex(), idx)
			}
			if got, want := f.Index(ServingTables...), map[bool]uint64{true: idx, false: before}[tc.moves]; got != want {
				t.Errorf("serving index = %d, want %d", got, want)
			}
		})
	}
}

func setHolders(t testing.TB, model string, v uint64, digest string, holders ...string) []byte {
	return encode(t, structs.VersionHoldersType, &structs.VersionHoldersRequest{Model: model, Version: v, Digest: digest, Holders: holders})
}

// VersionHolders replaces a version's holders, and only for the artifact it
// names.
func TestFSM_VersionHolders(t *testing.T) {
	setup := func(t *testing.T) [][]byte { return irisSetup(t) }
	holdersOf := func(want ...string) func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
		return func(t *testing.T, txn *Txn, _ uint64, _ interface{}) {
			v, err := txn.Version("iris", 1)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v.Holders, want) {
				t.Fatalf("holders = %v, want %v", v.Holders, want)
			}
		}
	}
	runServingCases(t, []servingCase{
		{
			name:  "replaces the holders",
			setup: setup,
			cmd:   func(t *testing.T) []byte { return setHolders(t, "iris", 1, digestOf(1), "node-2", "node-3") },
			check: holdersOf("node-2", "node-3"),
		},
		{
			name:     "unknown version",
			setup:    setup,
			cmd:      func(t *testing.T) []byte { return setHolders(t, "iris", 9, digestOf(1), "node-2") },
			wantCode: structs.CodeNotFound,
			check:    holdersOf("node-1", "node-2"),
		},
		{
			name:     "another artifact",
			setup:    setup,
			cmd:      func(t *testing.T) []byte { return setHolders(t, "iris", 1, digestOf(2), "node-3") },
			wantCode: structs.CodeConflict,
			wantMsg:  "has artifact",
			check:    holdersOf("node-1", "node-2"),
		},
		{
			name:     "no holders",
			setup:    setup,
			cmd:      func(t *testing.T) []byte { return setHolders(t, "iris", 1, digestOf(1)) },
			wantCode: structs.CodeInvalid,
			wantMsg:  "holders",
		},
		{
			name:     "a holder twice",
			setup:    setup,
			cmd:      func(t *testing.T) []byte { return setHolders(t, "iris", 1, digestOf(1), "node-3", "node-3") },
			wantCode: structs.CodeInvalid,
			wantMsg:  "twice",
		},
	})
}
