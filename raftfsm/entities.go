package raftfsm

// Key layout: every record lives under a short prefix naming its entity, followed
// by its identity; values are the msgpack encoding of the structs type. Keys sort
// by identity within a prefix, which is what paging relies on. Each capability
// declares its prefixes in its <capability>_apply.go; the metadata keys are here.
const (
	// keyAppliedIndex holds the last applied Raft index, 8 bytes big-endian. It is
	// written in the same transaction as the changes of the entries it covers.
	keyAppliedIndex = "meta/applied_index"

	// keyAppliedPartial exists only while a structs.BatchType entry is half applied
	// (its commands were split across transactions): its index and how many of its
	// commands the state holds, 8+8 bytes big-endian.
	keyAppliedPartial = "meta/applied_partial"
)

// frameType tags a frame of a snapshot stream. Like structs.MessageType it is
// append-only: snapshots outlive the binary that wrote them.
type frameType uint8

const (
	frameHeader     frameType = 1
	frameNode       frameType = 2
	frameModel      frameType = 3
	frameVersion    frameType = 4
	frameDeployment frameType = 5
	frameAlloc      frameType = 6
	frameACLPolicy  frameType = 7
	frameACLToken   frameType = 8
	frameACLBoot    frameType = 9
	frameDataset    frameType = 10
	frameDatasetVer frameType = 11
	frameJob        frameType = 12
	frameJobAlloc   frameType = 13
	frameExperiment frameType = 14
	frameExpName    frameType = 15
	frameExpSeq     frameType = 16
	frameRun        frameType = 17
	frameMetric     frameType = 18
	frameRunArt     frameType = 19
	frameTuning     frameType = 20
	frameSource     frameType = 21
	frameEntity     frameType = 22
	frameFeatView   frameType = 23
	frameFeatSvc    frameType = 24
	frameFeatValue  frameType = 25
	frameSourceRun  frameType = 26
	framePipeline   frameType = 27
	framePipeRun    frameType = 28
	frameStepCache  frameType = 29
	frameMonitor    frameType = 30
	frameDriftCheck frameType = 31
	frameAlertRule  frameType = 32
	frameAlert      frameType = 33
	frameFooter     frameType = 255
)

// entity describes one kind of record: where it lives, the table whose index
// its changes move, and how it travels in a snapshot. A capability that adds a
// record type adds it here (and its table name to tables.go) and registers its
// commands; Snapshot, Restore and FSM.Index need nothing else.
type entity struct {
	name   string
	prefix string
	// table names the entity's table for FSM.Index: staging a write under
	// prefix marks it changed.
	table string
	frame frameType
	// keyOf decodes one record of this entity and returns its key. Restore uses it
	// to place a snapshot frame and to reject records that do not decode. It checks
	// only what the key needs, not today's validation rules, so that a snapshot
	// written by an older version always loads.
	keyOf func(raw []byte) (string, error)
	// validate decodes one record and holds it to the rules the API applies
	// (the structs' Validate methods and what Apply checks besides), naming the
	// record in its error. ValidateSnapshot runs it on snapshots from outside;
	// Restore does not, for the reason given on keyOf.
	validate func(raw []byte) error
}

// entities lists every record type, in the order a snapshot writes them.
var entities = []entity{
	{name: "node", prefix: prefixNode, table: TableNodes, frame: frameNode, keyOf: nodeKeyOf, validate: validateNodeRecord},
	{name: "model", prefix: prefixModel, table: TableModels, frame: frameModel, keyOf: modelKeyOf, validate: validateModelRecord},
	{name: "version", prefix: prefixVersion, table: TableVersions, frame: frameVersion, keyOf: versionKeyOf, validate: validateVersionRecord},
	{name: "deployment", prefix: prefixDeployment, table: TableDeployments, frame: frameDeployment, keyOf: deploymentKeyOf, validate: validateDeploymentRecord},
	{name: "allocation", prefix: prefixAlloc, table: TableAllocations, frame: frameAlloc, keyOf: allocKeyOf, validate: validateAllocRecord},
	{name: "acl policy", prefix: prefixACLPolicy, table: TableACLPolicies, frame: frameACLPolicy, keyOf: aclPolicyKeyOf, validate: validateACLPolicyRecord},
	{name: "acl token", prefix: prefixACLToken, table: TableACLTokens, frame: frameACLToken, keyOf: aclTokenKeyOf, validate: validateACLTokenRecord},
	{name: "acl bootstrap", prefix: prefixACLBootstrap, table: TableACLBootstrap, frame: frameACLBoot, keyOf: aclBootstrapKeyOf, validate: validateACLBootstrapRecord},
	{name: "dataset", prefix: prefixDataset, table: TableDatasets, frame: frameDataset, keyOf: datasetKeyOf, validate: validateDatasetRecord},
	{name: "dataset version", prefix: prefixDatasetVersion, table: TableDatasetVersions, frame: frameDatasetVer, keyOf: datasetVersionKeyOf, validate: validateDatasetVersionRecord},
	{name: "job", prefix: prefixJob, table: TableJobs, frame: frameJob, keyOf: jobKeyOf, validate: validateJobRecord},
	{name: "job allocation", prefix: prefixJobAlloc, table: TableJobAllocations, frame: frameJobAlloc, keyOf: jobAllocKeyOf, validate: validateJobAllocRecord},
	{name: "experiment", prefix: prefixExperiment, table: TableExperiments, frame: frameExperiment, keyOf: experimentKeyOf, validate: validateExperimentRecord},
	{name: "experiment name", prefix: prefixExperimentName, table: TableExperimentNames, frame: frameExpName, keyOf: experimentNameKeyOf, validate: validateExperimentNameRecord},
	{name: "experiment counter", prefix: prefixExperimentSeq, table: TableExperimentSeq, frame: frameExpSeq, keyOf: experimentSeqKeyOf, validate: validateExperimentSeqRecord},
	{name: "run", prefix: prefixRun, table: TableRuns, frame: frameRun, keyOf: runKeyOf, validate: validateRunRecord},
	{name: "metric point", prefix: prefixMetric, table: TableMetrics, frame: frameMetric, keyOf: metricKeyOf, validate: validateMetricRecord},
	{name: "run artifact", prefix: prefixRunArtifact, table: TableRunArtifacts, frame: frameRunArt, keyOf: runArtifactKeyOf, validate: validateRunArtifactRecord},
	{name: "tuning", prefix: prefixTuning, table: TableTunings, frame: frameTuning, keyOf: tuningKeyOf, validate: validateTuningRecord},
	{name: "source", prefix: prefixSource, table: TableSources, frame: frameSource, keyOf: sourceKeyOf, validate: validateSourceRecord},
	{name: "source run", prefix: prefixSourceRun, table: TableSourceRuns, frame: frameSourceRun, keyOf: sourceRunKeyOf, validate: validateSourceRunRecord},
	{name: "entity", prefix: prefixEntity, table: TableEntities, frame: frameEntity, keyOf: entityKeyOf, validate: validateEntityRecord},
	{name: "feature view", prefix: prefixFeatureView, table: TableFeatureViews, frame: frameFeatView, keyOf: featureViewKeyOf, validate: validateFeatureViewRecord},
	{name: "feature service", prefix: prefixFeatureService, table: TableFeatureServices, frame: frameFeatSvc, keyOf: featureServiceKeyOf, validate: validateFeatureServiceRecord},
	{name: "pipeline", prefix: prefixPipeline, table: TablePipelines, frame: framePipeline, keyOf: pipelineKeyOf, validate: validatePipelineRecord},
	{name: "pipeline run", prefix: prefixPipelineRun, table: TablePipelineRuns, frame: framePipeRun, keyOf: pipelineRunKeyOf, validate: validatePipelineRunRecord},
	{name: "step cache entry", prefix: prefixStepCache, table: TableStepCache, frame: frameStepCache, keyOf: stepCacheKeyOf, validate: validateStepCacheRecord},
	{name: "monitor", prefix: prefixMonitor, table: TableMonitors, frame: frameMonitor, keyOf: monitorKeyOf, validate: validateMonitorRecord},
	{name: "drift check", prefix: prefixDriftCheck, table: TableDriftChecks, frame: frameDriftCheck, keyOf: driftCheckKeyOf, validate: validateDriftCheckRecord},
	{name: "alert rule", prefix: prefixAlertRule, table: TableAlertRules, frame: frameAlertRule, keyOf: alertRuleKeyOf, validate: validateAlertRuleRecord},
	{name: "alert", prefix: prefixAlert, table: TableAlerts, frame: frameAlert, keyOf: alertKeyOf, validate: validateAlertRecord},
	{name: "feature value", prefix: prefixFeatureValue, table: TableFeatureValues, frame: frameFeatValue, keyOf: featureValueKeyOf, validate: validateFeatureValueRecord},
}

func entityByFrame(t frameType) (entity, bool) {
	for _, e := range entities {
		if e.frame == t {
			return e, true
		}
	}
	return entity{}, false
}
