package raftfsm

import (
	"fmt"
	"math/bits"
	"strings"
)

// Tables, for FSM.Index. Each entity (entities.go) is one table: a batch that
// writes or deletes a record under the entity's prefix moves the table's
// index. A derived table holds no records; commands move it by name
// (applyTxn.touch) when they change what it stands for.
const (
	TableNodes  = "nodes"
	TableModels = "models"
	// TableRoutes moves when a model's existence or its aliases change:
	// what routing reads from models, and only that. A model's tags or
	// description move TableModels alone, so that registry writes leave the
	// ingress's cache alone.
	TableRoutes       = "routes"
	TableVersions     = "versions"
	TableDeployments  = "deployments"
	TableAllocations  = "allocations"
	TableACLPolicies  = "acl_policies"
	TableACLTokens    = "acl_tokens"
	TableACLBootstrap = "acl_bootstrap"
	// TableDatasets and TableDatasetVersions hold datasets and their versions.
	TableDatasets        = "datasets"
	TableDatasetVersions = "dataset_versions"
	// TableJobs holds jobs; TableJobAllocations the members of placed and
	// running jobs, by node (the ledger's share of training).
	TableJobs           = "jobs"
	TableJobAllocations = "job_allocations"
	// Experiments and runs: experiments by ID and by name, the last
	// experiment ID given, runs, and each run's metric history.
	TableExperiments     = "experiments"
	TableExperimentNames = "experiment_names"
	TableExperimentSeq   = "experiment_seq"
	TableRuns            = "runs"
	TableMetrics         = "run_metrics"
	TableRunArtifacts    = "run_artifacts"
	// TableTunings holds tuning runs.
	TableTunings = "tunings"
	// Sources, entities, feature views and services, and feature values.
	TableSources         = "sources"
	TableSourceRuns      = "source_runs"
	TableEntities        = "entities"
	TableFeatureViews    = "feature_views"
	TableFeatureServices = "feature_services"
	TableFeatureValues   = "feature_values"
	// TablePipelines holds pipelines.
	TablePipelines    = "pipelines"
	TablePipelineRuns = "pipeline_runs"
	TableStepCache    = "step_cache"
	// Monitors, their drift checks, alert rules and alerts.
	TableMonitors    = "monitors"
	TableDriftChecks = "drift_checks"
	TableAlertRules  = "alert_rules"
	TableAlerts      = "alerts"
)

// derivedTables are the tables that no entity stores.
var derivedTables = []string{TableRoutes}

// maxTables bounds the number of tables, so that a set of them is one word
// and their indexes a fixed array.
const maxTables = 64

// tableID numbers a table: the entities in order, then the derived tables.
type tableID uint8

// tableSet is a set of tables, one bit per tableID.
type tableSet uint64

func (s tableSet) add(id tableID) tableSet { return s | 1<<id }

// tableNames[id] is the name of table id; tableIDs is its inverse;
// entityTables[i] is the table of entities[i].
var tableNames, tableIDs, entityTables = numberTables(entities, derivedTables)

func numberTables(es []entity, derived []string) ([]string, map[string]tableID, []tableID) {
	names := make([]string, 0, len(es)+len(derived))
	ids := make(map[string]tableID)
	add := func(name string) tableID {
		if name == "" {
			panic("raftfsm: a table has no name")
		}
		if _, dup := ids[name]; dup {
			panic(fmt.Sprintf("raftfsm: table %q declared twice", name))
		}
		if len(names) == maxTables {
			panic(fmt.Sprintf("raftfsm: more than %d tables", maxTables))
		}
		id := tableID(len(names))
		names = append(names, name)
		ids[name] = id
		return id
	}
	byEntity := make([]tableID, len(es))
	for i, e := range es {
		byEntity[i] = add(e.table)
	}
	for _, name := range derived {
		add(name)
	}
	return names, ids, byEntity
}

// mustTableID resolves a table name; an unknown one is a programming error.
func mustTableID(name string) tableID {
	id, ok := tableIDs[name]
	if !ok {
		panic(fmt.Sprintf("raftfsm: unknown table %q (tables: %s)", name, strings.Join(tableNames, ", ")))
	}
	return id
}

func mustTableIDs(names []string) []tableID {
	if len(names) == 0 {
		panic("raftfsm: Index needs at least one table")
	}
	ids := make([]tableID, len(names))
	for i, name := range names {
		ids[i] = mustTableID(name)
	}
	return ids
}

// tableOfKey returns the table of the entity whose prefix key has. Every
// record belongs to an entity, or Snapshot would leave it out: a command that
// stages any other key is a bug.
func tableOfKey(key string) tableID {
	for i, e := range entities {
		if strings.HasPrefix(key, e.prefix) {
			return entityTables[i]
		}
	}
	panic(fmt.Sprintf("raftfsm: key %q belongs to no entity", key))
}

// Groups of tables that callers watch together.
var (
	// ServingTables hold what routing a prediction and placing replicas
	// read: a model's existence and aliases (routes), versions,
	// deployments and allocations. A model's tags or description are not
	// among them, so registry writes leave the serving caches alone.
	ServingTables = []string{TableRoutes, TableVersions, TableDeployments, TableAllocations}
	// ACLTables hold policies, tokens and the bootstrap record: a token
	// cache keyed on their index is current while it has not moved.
	ACLTables = []string{TableACLPolicies, TableACLTokens, TableACLBootstrap}
)

// Index returns the applied index of the last batch that changed any of the
// named tables (Table* constants), as Nomad's state store does per table: a
// view at or after it sees those tables as they are now, and a cache keyed on
// it stays current while it does not move. New and Restore set every table to
// the applied index. It is set after the batch commits and before
// AppliedIndex moves, so a ReadTxn opened after it sees at least that state,
// and after WaitForIndex(n) a table changed at n reads n. It panics when
// given no name or an unknown one.
func (f *FSM) Index(tables ...string) uint64 {
	if len(tables) == 0 {
		panic("raftfsm: Index needs at least one table")
	}
	var idx uint64
	for _, name := range tables {
		idx = max(idx, f.tableIndex[mustTableID(name)].Load())
	}
	return idx
}

// IndexFunc returns a function equal to Index(tables...) that resolved the
// names once, for callers that ask on every request. It panics as Index does,
// when called.
func (f *FSM) IndexFunc(tables ...string) func() uint64 {
	ids := mustTableIDs(tables)
	if len(ids) == 1 {
		return f.tableIndex[ids[0]].Load
	}
	return func() uint64 { return f.maxIndex(ids) }
}

func (f *FSM) maxIndex(ids []tableID) uint64 {
	var idx uint64
	for _, id := range ids {
		idx = max(idx, f.tableIndex[id].Load())
	}
	return idx
}

// setIndexes moves the tables in s to index; all of them when s is allTables.
func (f *FSM) setIndexes(s tableSet, index uint64) {
	for s != 0 {
		id := bits.TrailingZeros64(uint64(s))
		f.tableIndex[id].Store(index)
		s &^= 1 << id
	}
}

// allTables returns the set of every table.
func allTables() tableSet {
	return tableSet(1<<len(tableNames) - 1)
}
