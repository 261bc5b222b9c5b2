package raftfsm

import (
	"slices"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// allTableNames is every table the package declares.
var allTableNames = []string{
	TableNodes, TableModels, TableRoutes, TableVersions, TableDeployments, TableAllocations,
	TableACLPolicies, TableACLTokens, TableACLBootstrap, TableDatasets, TableDatasetVersions,
	TableJobs, TableJobAllocations,
	TableExperiments, TableExperimentNames, TableExperimentSeq, TableRuns, TableMetrics, TableRunArtifacts, TableTunings,
	TableSources, TableSourceRuns, TableEntities, TableFeatureViews, TableFeatureServices, TableFeatureValues, TablePipelines, TablePipelineRuns, TableStepCache,
	TableMonitors, TableDriftChecks, TableAlertRules, TableAlerts,
}

// assertTableIndexes checks Index of every table: want for those in moved,
// before[name] for the others.
func assertTableIndexes(t *testing.T, f *FSM, before map[string]uint64, moved []string, want uint64) {
	t.Helper()
	for _, name := range allTableNames {
		exp := before[name]
		if slices.Contains(moved, name) {
			exp = want
		}
		if got := f.Index(name); got != exp {
			t.Errorf("Index(%s) = %d, want %d", name, got, exp)
		}
	}
}

func tableIndexes(f *FSM) map[string]uint64 {
	out := map[string]uint64{}
	for _, name := range allTableNames {
		out[name] = f.Index(name)
	}
	return out
}

func TestTables_EveryTableIsDeclared(t *testing.T) {
	if !slices.Equal(slices.Sorted(slices.Values(tableNames)), slices.Sorted(slices.Values(allTableNames))) {
		t.Fatalf("tables %v, want %v", tableNames, allTableNames)
	}
	for i, e := range entities {
		if tableNames[entityTables[i]] != e.table {
			t.Errorf("entity %s: table %q, want %q", e.name, tableNames[entityTables[i]], e.table)
		}
	}
}

func TestNumberTables_Panics(t *testing.T) {
	many := make([]string, maxTables+1)
	for i := range many {
		many[i] = strings.Repeat("t", i+1)
	}
	tests := []struct {
		name    string
		es      []entity
		derived []string
		wantMsg string
	}{
		{"two entities, one table", []entity{{name: "a", table: "x"}, {name: "b", table: "x"}}, nil, `table "x" declared twice`},
		{"derived table named like an entity's", []entity{{name: "a", table: "x"}}, []string{"x"}, `table "x" declared twice`},
		{"entity without a table", []entity{{name: "a"}}, nil, "has no name"},
		{"too many tables", nil, many, "more than 64 tables"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, tt.wantMsg) {
					t.Fatalf("panic %q, want one containing %q", msg, tt.wantMsg)
				}
			}()
			numberTables(tt.es, tt.derived)
		})
	}
}

// Each command moves the tables of the records it writes, and the derived
// tables it names; a model's tags move models but not routes, so the
// ingress's cache (keyed on routing tables) survives registry writes.
func TestFSM_IndexMovesPerTable(t *testing.T) {
	f := testFSM(t)
	setup := irisSetup(t,
		putDeployment(t, "iris", trafficOf(split(1, 100))),
		createModel(t, "spare", nil),
		policyCmd(t, "p", `node { policy = "read" }`),
	)
	mustApply(t, f, 1, setup...)
	idx := uint64(len(setup))

	boot, _ := newToken(structs.ManagementPolicy)
	tok, _ := newToken("p")
	for _, tc := range []struct {
		name  string
		entry []byte
		moves []string
	}{
		{"model tags", updateModel(t, "iris", map[string]*string{"stage": ptr("prod")}), []string{TableModels}},
		{"model create", createModel(t, "other", nil), []string{TableModels, TableRoutes}},
		{"alias", setAlias(t, "iris", "champion", 1), []string{TableModels, TableRoutes}},
		{"version create", createVersion(t, "spare"), []string{TableModels, TableVersions}},
		{"model delete with its versions", deleteModel(t, "spare"), []string{TableModels, TableRoutes, TableVersions}},
		{"node", upsertNode(t, "node-3", 4), []string{TableNodes}},
		{"deployment put", putDeployment(t, "iris", trafficOf(split(2, 100))), []string{TableDeployments}},
		{"alloc plan", planAllocs(t, []structs.Allocation{allocOf("a1", "iris", 2, "node-1")}), []string{TableAllocations}},
		{"alloc status", reportAllocs(t, report("a1", "node-1", structs.AllocRunning, "")), []string{TableAllocations}},
		{"policy", policyCmd(t, "q", `node { policy = "write" }`), []string{TableACLPolicies}},
		{"token", tokenCmd(t, tok), []string{TableACLTokens}},
		{"bootstrap", bootstrapTokenCmd(t, boot, 0), []string{TableACLTokens, TableACLBootstrap}},
		{"rejected command", deleteDeployment(t, "nosuch"), nil},
		{"rejected plan", planAllocs(t, []structs.Allocation{allocOf("a2", "iris", 2, "node-1")}), nil},
		{"deployment delete", deleteDeployment(t, "iris"), []string{TableDeployments, TableAllocations}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tableIndexes(f)
			idx++
			res := f.ApplyBatch(commandLogs(idx, tc.entry))[0]
			if rejected := codeOf(res) != ""; rejected != (tc.moves == nil) {
				t.Fatalf("result %v; want a rejection: %v", res, tc.moves == nil)
			}
			assertTableIndexes(t, f, before, tc.moves, idx)
		})
	}
}

// After a batch, every table it touched holds the batch's last index, even
// when the command that touched it came earlier in the batch.
func TestFSM_IndexIsTheBatchsLastIndex(t *testing.T) {
	f := testFSM(t)
	mustApply(t, f, 1, createModel(t, "iris", nil), upsertNode(t, "node-1", 4))
	f.ApplyBatch(commandLogs(3,
		updateModel(t, "iris", map[string]*string{"k": ptr("v")}),
		deleteDeployment(t, "nosuch"), // rejected: moves nothing
		group(t, upsertNode(t, "node-1", 8), deleteModel(t, "nosuch")),
	))
	assertTableIndexes(t, f, map[string]uint64{
		TableRoutes: 2, TableVersions: 0, TableDeployments: 0, TableAllocations: 0,
		TableACLPolicies: 0, TableACLTokens: 0, TableACLBootstrap: 0,
	}, []string{TableModels, TableNodes}, 5)
	if f.AppliedIndex() != 5 {
		t.Fatalf("AppliedIndex = %d, want 5", f.AppliedIndex())
	}
}

func TestFSM_IndexIsMaxOverTables(t *testing.T) {
	f := testFSM(t)
	mustApply(t, f, 1, createModel(t, "iris", nil))
	mustApply(t, f, 2, upsertNode(t, "node-1", 4))
	mustApply(t, f, 3, updateModel(t, "iris", map[string]*string{"k": ptr("v")}))
	tests := []struct {
		tables []string
		want   uint64
	}{
		{[]string{TableRoutes}, 1},
		{[]string{TableNodes}, 2},
		{[]string{TableModels}, 3},
		{[]string{TableRoutes, TableNodes}, 2},
		{[]string{TableNodes, TableModels, TableRoutes}, 3},
		{[]string{TableVersions, TableACLTokens}, 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.tables, ","), func(t *testing.T) {
			if got := f.Index(tt.tables...); got != tt.want {
				t.Errorf("Index = %d, want %d", got, tt.want)
			}
			fn := f.IndexFunc(tt.tables...)
			if got := fn(); got != tt.want {
				t.Errorf("IndexFunc()() = %d, want %d", got, tt.want)
			}
		})
	}
	// An IndexFunc reads the live indexes, not those of when it was made.
	models, routing := f.IndexFunc(TableModels), f.IndexFunc(TableRoutes, TableVersions)
	mustApply(t, f, 4, createVersion(t, "iris"))
	if models() != 4 || routing() != 4 || f.Index(TableRoutes) != 1 {
		t.Fatalf("after a version at 4: models %d, routing %d, routes %d; want 4, 4, 1", models(), routing(), f.Index(TableRoutes))
	}
	if got, want := f.Index(ServingTables...), f.Index(TableRoutes, TableVersions, TableDeployments, TableAllocations); got != want {
		t.Fatalf("Index(ServingTables...) = %d, Index of its tables = %d", got, want)
	}
	if got, want := f.Index(ACLTables...), f.Index(TableACLPolicies, TableACLTokens, TableACLBootstrap); got != want {
		t.Fatalf("ACLIndex = %d, Index of its tables = %d", got, want)
	}
}

func TestFSM_IndexUnknownTablePanics(t *testing.T) {
	f := testFSM(t)
	tests := []struct {
		name    string
		call    func()
		wantMsg string
	}{
		{"Index", func() { f.Index("dashboards") }, `unknown table "dashboards"`},
		{"Index among known ones", func() { f.Index(TableModels, "job") }, `unknown table "job"`},
		{"Index of nothing", func() { f.Index() }, "at least one table"},
		{"IndexFunc", func() { f.IndexFunc(TableModels, "Models") }, `unknown table "Models"`},
		{"IndexFunc of nothing", func() { f.IndexFunc() }, "at least one table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, tt.wantMsg) {
					t.Fatalf("panic %q, want one containing %q", msg, tt.wantMsg)
				}
			}()
			tt.call()
		})
	}
}

// New and Restore cannot know which tables the entries before them touched:
// every table starts at the applied index.
func TestFSM_IndexNewAndRestoreSetEveryTable(t *testing.T) {
	dir := t.TempDir()
	src := testFSM(t, onDisk(dir))
	mustApply(t, src, 1, createModel(t, "iris", nil))
	mustApply(t, src, 2, upsertNode(t, "node-1", 4), updateModel(t, "iris", map[string]*string{"k": ptr("v")}))
	if src.Index(TableRoutes) != 1 || src.Index(TableACLTokens) != 0 {
		t.Fatalf("before: routes %d, tokens %d; want 1, 0", src.Index(TableRoutes), src.Index(TableACLTokens))
	}
	var snap memSink
	s, err := src.Snapshot()
	must(t, err)
	must(t, s.Persist(&snap))
	s.Release()
	must(t, src.Close())

	t.Run("New", func(t *testing.T) {
		f := testFSM(t, onDisk(dir))
		assertTableIndexes(t, f, nil, allTableNames, 3)
	})
	t.Run("Restore", func(t *testing.T) {
		f := testFSM(t)
		mustApply(t, f, 1, createModel(t, "other", nil))
		must(t, restoreBytes(f, snap.Bytes()))
		assertTableIndexes(t, f, nil, allTableNames, 3)
	})
}
