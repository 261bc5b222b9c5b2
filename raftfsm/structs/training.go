package structs

import (
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Training commands: jobs (DESIGN.md §7). Never renumber; add new ones at the
// end of RangeTraining.
const (
	// JobSubmitType records a new job, pending. Apply pins its dataset
	// version and refuses a job that no registered node could ever hold.
	JobSubmitType MessageType = 32
	// JobPlanType is the scheduler's decision: jobs to place (each with all
	// its allocations, or none: a gang) and jobs to mark lost. Apply
	// re-checks every placement against the one capacity ledger.
	JobPlanType MessageType = 33
	// JobUpdateType carries what a job's node saw: running, or finished
	// (succeeded or failed, with the exit code, the last log lines and the
	// final metrics).
	JobUpdateType MessageType = 34
	// JobCancelType asks for a job to stop; a pending job is cancelled at
	// once, a placed or running one once its node has stopped it.
	JobCancelType MessageType = 35
)

var _ = registerTypes(RangeTraining,
	TypeDef{JobSubmitType, "job_submit"},
	TypeDef{JobPlanType, "job_plan"},
	TypeDef{JobUpdateType, "job_update"},
	TypeDef{JobCancelType, "job_cancel"},
)

// Job states. A job is terminal once succeeded, failed, cancelled or lost.
const (
	JobPending   = "pending"   // waiting for capacity (Reason says why)
	JobPlaced    = "placed"    // allocations committed; its nodes start it
	JobRunning   = "running"   // every member has started
	JobSucceeded = "succeeded" // every member exited 0 (the model, if any, is registered)
	JobFailed    = "failed"    // a member failed (ExitCode, LogTail), or retries ran out
	JobCancelled = "cancelled" // stopped on request
	JobLost      = "lost"      // its node died and no retry was left
)

// Trainer kinds.
const (
	TrainerBuiltin = "builtin"
	TrainerProcess = "process"
)

// Placement strategies.
const (
	PlaceBinpack = "binpack"
	PlaceSpread  = "spread"
)

// Limits of a job spec.
const (
	MaxJobNodes      = 64
	MaxJobGPUs       = 64
	MaxJobParams     = 256
	MaxJobFeatures   = MaxDatasetColumns
	MaxJobRetries    = 100
	MaxJobHistory    = 32
	MaxJobLogTail    = 20
	MaxJobLogLineLen = 1024
	MaxJobMetrics    = 64
)

// TrainerSpec says what a job runs: a built-in algorithm, or a command.
type TrainerSpec struct {
	Kind      string            `msgpack:"kind" json:"kind"`
	Algorithm string            `msgpack:"algorithm,omitempty" json:"algorithm,omitempty"`
	Command   []string          `msgpack:"command,omitempty" json:"command,omitempty"`
	Args      []string          `msgpack:"args,omitempty" json:"args,omitempty"`
	Env       map[string]string `msgpack:"env,omitempty" json:"env,omitempty"`
}

// ValidationSpec chooses the rows a job's metrics are computed on: a share
// of the dataset held out, k folds, or another dataset version. Zero means
// no validation: metrics are on the training rows.
type ValidationSpec struct {
	Split   float64 `msgpack:"split,omitempty" json:"split,omitempty"`
	KFold   int     `msgpack:"k_fold,omitempty" json:"k_fold,omitempty"`
	Dataset string  `msgpack:"dataset,omitempty" json:"dataset,omitempty"`
}

// JobResources is what each member of a job holds on its node.
type JobResources struct {
	CPU         float64 `msgpack:"cpu" json:"cpu"`
	MemoryMB    int64   `msgpack:"memory_mb" json:"memory_mb"`
	GPUs        int     `msgpack:"gpus" json:"gpus"`
	GPUModel    string  `msgpack:"gpu_model,omitempty" json:"gpu_model,omitempty"`
	GPUMemoryMB int64   `msgpack:"gpu_memory_mb,omitempty" json:"gpu_memory_mb,omitempty"`
}

// JobSpec is what a user submits.
type JobSpec struct {
	Name       string         `msgpack:"name" json:"name"`
	Experiment string         `msgpack:"experiment" json:"experiment"`
	Trainer    TrainerSpec    `msgpack:"trainer" json:"trainer"`
	Dataset    string         `msgpack:"dataset,omitempty" json:"dataset,omitempty"`
	Target     string         `msgpack:"target,omitempty" json:"target,omitempty"`
	Features   []string       `msgpack:"features,omitempty" json:"features,omitempty"`
	Validation ValidationSpec `msgpack:"validation" json:"validation"`
	Params     map[string]any `msgpack:"params,omitempty" json:"params,omitempty"`
	Resources  JobResources   `msgpack:"resources" json:"resources"`
	Nodes      int            `msgpack:"nodes" json:"nodes"`
	Placement  string         `msgpack:"placement" json:"placement"`
	Priority   int            `msgpack:"priority" json:"priority"`
	Retries    int            `msgpack:"retries" json:"retries"`
	// Timeout bounds one attempt's run ("1h"); empty is none.
	Timeout    string `msgpack:"timeout,omitempty" json:"timeout,omitempty"`
	RegisterAs string `msgpack:"register_as,omitempty" json:"register_as,omitempty"`
	// FeatureFrame trains from features instead of a dataset: the node
	// that takes the job builds the point-in-time frame and names it as the
	// job's dataset (and its features as the job's features, unless given).
	FeatureFrame *FeatureFrame `msgpack:"feature_frame,omitempty" json:"feature_frame,omitempty"`
}

// FeatureFrame asks for a job's data as a point-in-time frame: the
// features of a service, as of each entity row's timestamp. The entity
// rows are a dataset version holding the join keys, the timestamp and the
// target; the frame is written as the next version of Output (default
// "<job name>-frame").
type FeatureFrame struct {
	Service         string `msgpack:"service" json:"service"`
	EntityRows      string `msgpack:"entity_rows" json:"entity_rows"`
	TimestampColumn string `msgpack:"timestamp_column,omitempty" json:"timestamp_column,omitempty"`
	Output          string `msgpack:"output,omitempty" json:"output,omitempty"`
}

// Normalize fills the defaults a spec leaves out.
func (s *JobSpec) Normalize() {
	if s.Nodes == 0 {
		s.Nodes = 1
	}
	if s.Placement == "" {
		s.Placement = PlaceBinpack
	}
	if s.Experiment == "" {
		s.Experiment = DefaultExperiment
	}
	if f := s.FeatureFrame; f != nil {
		if f.TimestampColumn == "" {
			f.TimestampColumn = "ts"
		}
		if f.Output == "" {
			f.Output = s.Name + "-frame"
		}
	}
}

// Validate checks a normalized spec on its own, naming the field at fault.
// What needs the registry (the dataset and its columns, whether any node
// could hold the job) is checked against it by the submitter and in Apply.
func (s *JobSpec) Validate() error {
	if err := ValidateName("name", s.Name); err != nil {
		return err
	}
	if err := ValidateExperimentName("experiment", s.Experiment); err != nil {
		return err
	}
	t := s.Trainer
	switch t.Kind {
	case TrainerBuiltin:
		if t.Algorithm == "" {
			return Errorf(CodeInvalid, "trainer.algorithm is required for a builtin trainer")
		}
		if len(t.Command) > 0 || len(t.Args) > 0 || len(t.Env) > 0 {
			return Errorf(CodeInvalid, "trainer.command, args and env are for a process trainer, not builtin")
		}
		if (s.Dataset == "" && s.FeatureFrame == nil) || s.Target == "" {
			return Errorf(CodeInvalid, "dataset (or feature_frame) and target are required for a builtin trainer")
		}
		if s.Nodes != 1 {
			return Errorf(CodeInvalid, "nodes is %d: a builtin trainer runs on one node", s.Nodes)
		}
	case TrainerProcess:
		if t.Algorithm != "" {
			return Errorf(CodeInvalid, "trainer.algorithm is for a builtin trainer, not process")
		}
		p := ProcessSpec{Command: append(slices.Clone(t.Command), t.Args...), Env: t.Env}
		if len(t.Command) == 0 {
			return Errorf(CodeInvalid, "trainer.command is required for a process trainer")
		}
		if err := p.Validate(); err != nil {
			return Errorf(CodeInvalid, "trainer: %v", err)
		}
	default:
		return Errorf(CodeInvalid, "trainer.kind %q is unknown: use builtin or process", t.Kind)
	}
	if s.Dataset != "" {
		if _, _, err := ParseDatasetRef("dataset", s.Dataset); err != nil {
			return err
		}
	}
	if f := s.FeatureFrame; f != nil {
		if err := ValidateName("feature_frame.service", f.Service); err != nil {
			return err
		}
		if _, _, err := ParseDatasetRef("feature_frame.entity_rows", f.EntityRows); err != nil {
			return err
		}
		if err := ValidateName("feature_frame.output", f.Output); err != nil {
			return err
		}
	}
	if len(s.Features) > MaxJobFeatures {
		return Errorf(CodeInvalid, "features lists %d columns, more than %d", len(s.Features), MaxJobFeatures)
	}
	for i, f := range s.Features {
		if f == "" || f == s.Target || slices.Contains(s.Features[:i], f) {
			return Errorf(CodeInvalid, "features[%d] %q is empty, the target, or listed twice", i, f)
		}
	}
	v := s.Validation
	set := 0
	if v.Split != 0 {
		set++
		if v.Split <= 0 || v.Split >= 1 {
			return Errorf(CodeInvalid, "validation.split must be between 0 and 1, not %g", v.Split)
		}
	}
	if v.KFold != 0 {
		set++
		if v.KFold < 2 || v.KFold > 100 {
			return Errorf(CodeInvalid, "validation.k_fold must be from 2 to 100, not %d", v.KFold)
		}
	}
	if v.Dataset != "" {
		set++
		if _, _, err := ParseDatasetRef("validation.dataset", v.Dataset); err != nil {
			return err
		}
	}
	if set > 1 {
		return Errorf(CodeInvalid, "validation takes one of split, k_fold or dataset")
	}
	if set > 0 && s.Dataset == "" && s.FeatureFrame == nil {
		return Errorf(CodeInvalid, "validation needs a dataset")
	}
	if len(s.Params) > MaxJobParams {
		return Errorf(CodeInvalid, "params has %d entries, more than %d", len(s.Params), MaxJobParams)
	}
	for _, k := range sortedKeys(s.Params) {
		if k == "" || len(k) > MaxTagKeyLen {
			return Errorf(CodeInvalid, "params key %.32q is empty or longer than %d bytes", k, MaxTagKeyLen)
		}
		switch s.Params[k].(type) {
		case float64, string, bool, int64, int8, int16, int32, uint8, uint16, uint32, uint64:
		default:
			return Errorf(CodeInvalid, "params.%s must be a number, a string or a boolean", k)
		}
	}
	r := s.Resources
	switch {
	case r.CPU < 0 || r.CPU > 4096:
		return Errorf(CodeInvalid, "resources.cpu must be from 0 to 4096, not %g", r.CPU)
	case r.MemoryMB < 0:
		return Errorf(CodeInvalid, "resources.memory_mb is negative")
	case r.GPUs < 0 || r.GPUs > MaxJobGPUs:
		return Errorf(CodeInvalid, "resources.gpus must be from 0 to %d, not %d", MaxJobGPUs, r.GPUs)
	case r.GPUMemoryMB < 0:
		return Errorf(CodeInvalid, "resources.gpu_memory_mb is negative")
	case (r.GPUModel != "" || r.GPUMemoryMB > 0) && r.GPUs == 0:
		return Errorf(CodeInvalid, "resources.gpu_model and gpu_memory_mb need resources.gpus")
	case len(r.GPUModel) > 128:
		return Errorf(CodeInvalid, "resources.gpu_model is longer than 128 bytes")
	}
	if s.Nodes < 1 || s.Nodes > MaxJobNodes {
		return Errorf(CodeInvalid, "nodes must be from 1 to %d, not %d", MaxJobNodes, s.Nodes)
	}
	if s.Placement != PlaceBinpack && s.Placement != PlaceSpread {
		return Errorf(CodeInvalid, "placement %q is unknown: use binpack or spread", s.Placement)
	}
	if s.Retries < 0 || s.Retries > MaxJobRetries {
		return Errorf(CodeInvalid, "retries must be from 0 to %d, not %d", MaxJobRetries, s.Retries)
	}
	if s.Priority < -1000 || s.Priority > 1000 {
		return Errorf(CodeInvalid, "priority must be from -1000 to 1000, not %d", s.Priority)
	}
	if s.Timeout != "" {
		d, err := time.ParseDuration(s.Timeout)
		if err != nil || d <= 0 {
			return Errorf(CodeInvalid, "timeout %q is not a positive duration such as \"30m\" or \"2h\"", s.Timeout)
		}
	}
	if s.RegisterAs != "" {
		if err := ValidateName("register_as", s.RegisterAs); err != nil {
			return err
		}
	}
	return nil
}

// TimeoutDuration is the spec's timeout, 0 for none.
func (s *JobSpec) TimeoutDuration() time.Duration {
	d, _ := time.ParseDuration(s.Timeout)
	return d
}

// GPUFits reports whether a GPU meets the spec's model (a substring, any
// case) and memory asks.
func (r *JobResources) GPUFits(g GPU) bool {
	if r.GPUModel != "" && !strings.Contains(strings.ToLower(g.Model), strings.ToLower(r.GPUModel)) {
		return false
	}
	return g.MemoryMB >= r.GPUMemoryMB
}

// JobAllocation is what one member of a job holds on one node: the GPU
// indices and the CPU and memory. Rank 0 is the member others meet at.
type JobAllocation struct {
	JobID    string  `msgpack:"job_id" json:"-"`
	Attempt  int     `msgpack:"attempt" json:"attempt"`
	Rank     int     `msgpack:"rank" json:"rank"`
	NodeID   string  `msgpack:"node_id" json:"node_id"`
	NodeName string  `msgpack:"node_name" json:"node_name"`
	GPUs     []int   `msgpack:"gpus" json:"gpus"`
	CPU      float64 `msgpack:"cpu" json:"cpu"`
	MemoryMB int64   `msgpack:"memory_mb" json:"memory_mb"`
	// Addr is the member's address for the others (rank 0's is
	// MASTER_ADDR); its node fills it in when it starts the member.
	Addr string `msgpack:"addr,omitempty" json:"addr,omitempty"`
	// State is the member's own: placed, running, succeeded, failed.
	State string `msgpack:"state" json:"state"`
}

// JobEvent is one state change of a job.
type JobEvent struct {
	State  string    `msgpack:"state" json:"state"`
	At     time.Time `msgpack:"at" json:"at"`
	Reason string    `msgpack:"reason,omitempty" json:"reason,omitempty"`
}

// Job is a submitted job and where it stands.
type Job struct {
	ID    string  `msgpack:"id" json:"id"`
	Spec  JobSpec `msgpack:"spec" json:"spec"`
	State string  `msgpack:"state" json:"state"`
	// Reason says why the job is pending, failed or lost.
	Reason string `msgpack:"reason,omitempty" json:"reason,omitempty"`
	// Attempt counts placements: 1 for the first, one more per retry.
	Attempt     int             `msgpack:"attempt" json:"attempt"`
	Allocations []JobAllocation `msgpack:"allocations" json:"allocations"`
	History     []JobEvent      `msgpack:"history" json:"history"`
	// CancelRequested is set by a cancel of a placed or running job, until
	// its nodes report it stopped.
	CancelRequested bool               `msgpack:"cancel_requested,omitempty" json:"cancel_requested,omitempty"`
	ExitCode        *int               `msgpack:"exit_code,omitempty" json:"exit_code,omitempty"`
	LogTail         []string           `msgpack:"log_tail,omitempty" json:"log_tail,omitempty"`
	Metrics         map[string]float64 `msgpack:"metrics,omitempty" json:"metrics,omitempty"`
	RunID           string             `msgpack:"run_id" json:"run_id"`
	ModelVersion    uint64             `msgpack:"model_version,omitempty" json:"model_version,omitempty"`
	// RetryOf is the finished job this one retries, with its spec.
	RetryOf     string    `msgpack:"retry_of,omitempty" json:"retry_of,omitempty"`
	SubmittedAt time.Time `msgpack:"submitted_at" json:"submitted_at"`
	StartedAt   time.Time `msgpack:"started_at,omitempty" json:"started_at,omitempty"`
	FinishedAt  time.Time `msgpack:"finished_at,omitempty" json:"finished_at,omitempty"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// Terminal reports whether the job will not change state again.
func (j *Job) Terminal() bool {
	switch j.State {
	case JobSucceeded, JobFailed, JobCancelled, JobLost:
		return true
	}
	return false
}

// JobSubmitRequest submits a job; the submitter makes the ID and the time.
type JobSubmitRequest struct {
	ID          string    `msgpack:"id"`
	Spec        JobSpec   `msgpack:"spec"`
	SubmittedAt time.Time `msgpack:"submitted_at"`
	// RetryOf names a finished job this one retries; the apply refuses it
	// unless that job has finished.
	RetryOf string `msgpack:"retry_of,omitempty"`
}

// JobPlacement places one pending job: all its members at once.
type JobPlacement struct {
	JobID string `msgpack:"job_id"`
	// Attempt is the job's attempt the plan was made for; a plan for an
	// attempt that has moved on is refused.
	Attempt     int             `msgpack:"attempt"`
	Allocations []JobAllocation `msgpack:"allocations"`
}

// JobWait records why a pending job could not be placed.
type JobWait struct {
	JobID  string `msgpack:"job_id"`
	Reason string `msgpack:"reason"`
}

// JobLoss marks a placed or running job lost: one of its nodes is gone.
type JobLoss struct {
	JobID   string `msgpack:"job_id"`
	Attempt int    `msgpack:"attempt"`
	Reason  string `msgpack:"reason"`
}

// JobPlanRequest is one pass of the scheduler. Each placement and loss
// applies or is refused on its own (the result lists the refused ones), so
// that a plan made from a slightly old view still places what fits.
type JobPlanRequest struct {
	Place []JobPlacement `msgpack:"place"`
	Wait  []JobWait      `msgpack:"wait"`
	Lose  []JobLoss      `msgpack:"lose"`
	At    time.Time      `msgpack:"at"`
}

// JobPlanResult says what of a plan applied.
type JobPlanResult struct {
	Placed  int      `msgpack:"placed"`
	Refused []string `msgpack:"refused"` // "<job id>: <reason>"
}

// JobUpdateRequest is a member's report from its node.
type JobUpdateRequest struct {
	JobID   string `msgpack:"job_id"`
	Attempt int    `msgpack:"attempt"`
	Rank    int    `msgpack:"rank"`
	NodeID  string `msgpack:"node_id"`
	// State is running, succeeded or failed.
	State    string             `msgpack:"state"`
	Addr     string             `msgpack:"addr,omitempty"`
	ExitCode *int               `msgpack:"exit_code,omitempty"`
	Reason   string             `msgpack:"reason,omitempty"`
	LogTail  []string           `msgpack:"log_tail,omitempty"`
	Metrics  map[string]float64 `msgpack:"metrics,omitempty"`
	// ModelVersion is the version registered from the job's output, set on
	// rank 0's success.
	ModelVersion uint64    `msgpack:"model_version,omitempty"`
	At           time.Time `msgpack:"at"`
}

// JobCancelRequest cancels a job.
type JobCancelRequest struct {
	JobID string    `msgpack:"job_id"`
	At    time.Time `msgpack:"at"`
}

// Experiments and runs (DESIGN.md §7): every job is a run, and MLflow's
// tracking API writes the same records. Never renumber.
const (
	// ExperimentCreateType creates an experiment; its ID is the creating
	// entry's index, in decimal, so IDs are numbers as MLflow's are.
	ExperimentCreateType MessageType = 36
	// ExperimentDeleteType marks an experiment deleted (MLflow keeps it,
	// and its name, in lifecycle_stage "deleted"); Restore undoes it.
	ExperimentDeleteType MessageType = 37
	// RunCreateType creates a run in an experiment.
	RunCreateType MessageType = 38
	// RunUpdateType changes a run's status, end time or name, or its
	// lifecycle stage (deleted, active).
	RunUpdateType MessageType = 39
	// RunLogType records a batch of metric points, params and tags of one
	// run: the node gathers a run's points for a moment, so that thousands
	// of points a second are a few entries, not thousands.
	RunLogType MessageType = 40
)

var _ = registerTypes(RangeTraining,
	TypeDef{ExperimentCreateType, "experiment_create"},
	TypeDef{ExperimentDeleteType, "experiment_delete"},
	TypeDef{RunCreateType, "run_create"},
	TypeDef{RunUpdateType, "run_update"},
	TypeDef{RunLogType, "run_log"},
)

// Run statuses, as MLflow names them.
const (
	RunRunning   = "RUNNING"
	RunScheduled = "SCHEDULED"
	RunFinished  = "FINISHED"
	RunFailed    = "FAILED"
	RunKilled    = "KILLED"
)

// Lifecycle stages of experiments and runs.
const (
	StageActive  = "active"
	StageDeleted = "deleted"
)

// DefaultExperiment is the experiment of jobs and runs that name none; its
// ID is "0", as MLflow's default experiment's.
const (
	DefaultExperiment   = "Default"
	DefaultExperimentID = "0"
)

// Limits of tracking records, MLflow's where it has them.
const (
	MaxTrackingKeyLen = 250
	MaxParamValueLen  = 6000
	MaxRunTagValueLen = 8000
	MaxRunLogMetrics  = 1000 // per batch, as MLflow's log-batch
	MaxRunLogParams   = 100
	MaxRunLogTags     = 100
	MaxRunKeys        = 1000 // distinct params, tags or metric keys of one run
)

// Experiment groups runs.
type Experiment struct {
	ID               string            `msgpack:"id" json:"experiment_id"`
	Name             string            `msgpack:"name" json:"name"`
	ArtifactLocation string            `msgpack:"artifact_location" json:"artifact_location"`
	Stage            string            `msgpack:"stage" json:"lifecycle_stage"`
	Tags             map[string]string `msgpack:"tags" json:"tags"`
	CreatedAt        time.Time         `msgpack:"created_at" json:"created_at"`
	UpdatedAt        time.Time         `msgpack:"updated_at" json:"updated_at"`
	CreateIndex      uint64            `msgpack:"create_index" json:"create_index"`
}

// MetricPoint is one value of a metric; Timestamp is in milliseconds since
// the Unix epoch, as MLflow's.
type MetricPoint struct {
	Key       string  `msgpack:"key" json:"key"`
	Value     float64 `msgpack:"value" json:"value"`
	Timestamp int64   `msgpack:"timestamp" json:"timestamp"`
	Step      int64   `msgpack:"step" json:"step"`
}

// Run is one training run: a job's, or one a client created.
type Run struct {
	ID           string `msgpack:"id" json:"id"`
	ExperimentID string `msgpack:"experiment_id" json:"experiment_id"`
	Name         string `msgpack:"name" json:"name"`
	UserID       string `msgpack:"user_id" json:"user_id"`
	Status       string `msgpack:"status" json:"status"`
	Stage        string `msgpack:"stage" json:"lifecycle_stage"`
	// StartTime and EndTime are milliseconds since the Unix epoch (0: not
	// ended), as MLflow's.
	StartTime int64             `msgpack:"start_time" json:"start_time"`
	EndTime   int64             `msgpack:"end_time" json:"end_time"`
	Params    map[string]string `msgpack:"params" json:"params"`
	Tags      map[string]string `msgpack:"tags" json:"tags"`
	// Metrics holds each key's latest point: the highest step, then the
	// latest timestamp, then the last logged, as MLflow's latest metric.
	Metrics map[string]MetricPoint `msgpack:"metrics" json:"metrics"`
	// JobID is the job whose run this is, if any.
	JobID       string `msgpack:"job_id,omitempty" json:"job_id,omitempty"`
	CreateIndex uint64 `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64 `msgpack:"modify_index" json:"modify_index"`
}

// ExperimentCreateRequest creates an experiment.
type ExperimentCreateRequest struct {
	Name             string            `msgpack:"name"`
	ArtifactLocation string            `msgpack:"artifact_location"`
	Tags             map[string]string `msgpack:"tags"`
	At               time.Time         `msgpack:"at"`
}

// ExperimentDeleteRequest deletes (Restore: restores) an experiment.
type ExperimentDeleteRequest struct {
	ID      string    `msgpack:"id"`
	Restore bool      `msgpack:"restore"`
	At      time.Time `msgpack:"at"`
}

// RunCreateRequest creates a run; the proposer makes the ID.
type RunCreateRequest struct {
	Run Run `msgpack:"run"`
}

// RunUpdateRequest changes what its non-empty fields name.
type RunUpdateRequest struct {
	ID      string `msgpack:"id"`
	Status  string `msgpack:"status,omitempty"`
	EndTime int64  `msgpack:"end_time,omitempty"`
	Name    string `msgpack:"name,omitempty"`
	// Stage sets the lifecycle stage: deleted, or active to restore.
	Stage string `msgpack:"stage,omitempty"`
}

// KeyValue is a param or a tag.
type KeyValue struct {
	Key   string `msgpack:"key" json:"key"`
	Value string `msgpack:"value" json:"value"`
}

// RunLogRequest logs to one run.
type RunLogRequest struct {
	RunID   string        `msgpack:"run_id"`
	Metrics []MetricPoint `msgpack:"metrics"`
	Params  []KeyValue    `msgpack:"params"`
	Tags    []KeyValue    `msgpack:"tags"`
	// DeleteTags are tag keys to remove.
	DeleteTags []string `msgpack:"delete_tags,omitempty"`
}

// MetricRecord is one stored metric point of a run, in the order logged:
// Index is the log entry's and Pos the point's place among the entry's.
type MetricRecord struct {
	RunID string `msgpack:"run_id"`
	MetricPoint
	Index uint64 `msgpack:"index"`
	Pos   int    `msgpack:"pos"`
}

// ExperimentName maps an experiment's name to its ID.
type ExperimentName struct {
	Name string `msgpack:"name"`
	ID   string `msgpack:"id"`
}

// ExperimentCounter is the last experiment ID given.
type ExperimentCounter struct {
	Last uint64 `msgpack:"last"`
}

// MaxExperimentNameLen bounds an experiment's name.
const MaxExperimentNameLen = 500

// ValidateExperimentName checks an experiment's name as MLflow takes them:
// any printable UTF-8, 1 to 500 bytes ("My experiment", "Default").
func ValidateExperimentName(field, name string) error {
	if name == "" || len(name) > MaxExperimentNameLen || !utf8.ValidString(name) {
		return Errorf(CodeInvalid, "%s must be 1 to %d bytes of UTF-8", field, MaxExperimentNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return Errorf(CodeInvalid, "%s %.64q holds a control character", field, name)
		}
	}
	return nil
}

// ValidateTrackingKey checks a metric, param or tag key as MLflow does:
// 1 to 250 bytes of letters, digits, and _ - . space / (no "..", no
// leading /).
func ValidateTrackingKey(field, k string) error {
	if k == "" || len(k) > MaxTrackingKeyLen || strings.HasPrefix(k, "/") || strings.Contains(k, "..") {
		return Errorf(CodeInvalid, "%s %.64q must be 1 to %d characters, not starting with / nor holding ..", field, k, MaxTrackingKeyLen)
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-. /:", r)) {
			return Errorf(CodeInvalid, "%s %.64q may hold only letters, digits, and _ - . : / and space", field, k)
		}
	}
	return nil
}

// RunArtifactPutType records a file of a run's artifacts (MLflow's
// log_artifact through the artifacts proxy), or new holders of one.
const RunArtifactPutType MessageType = 41

var _ = registerTypes(RangeTraining, TypeDef{RunArtifactPutType, "run_artifact_put"})

// RunArtifactPutRequest records a run artifact. With HoldersOnly it only
// replaces the holders of the file at the path, which must still be the
// same blob.
type RunArtifactPutRequest struct {
	Artifact    RunArtifact `msgpack:"artifact"`
	HoldersOnly bool        `msgpack:"holders_only"`
}

// MaxArtifactPathLen bounds a run artifact's path.
const MaxArtifactPathLen = 1024

// RunArtifact is one file of a run's artifacts, stored as a blob.
type RunArtifact struct {
	RunID   string   `msgpack:"run_id" json:"run_id"`
	Path    string   `msgpack:"path" json:"path"` // relative, '/'-separated
	Digest  string   `msgpack:"digest" json:"digest"`
	Size    int64    `msgpack:"size" json:"size"`
	Holders []string `msgpack:"holders" json:"holders"`
}

// Validate checks an artifact record, naming the field at fault.
func (a *RunArtifact) Validate() error {
	if a.RunID == "" || len(a.RunID) > 64 {
		return Errorf(CodeInvalid, "run_id is required")
	}
	if err := ValidateArtifactPath(a.Path); err != nil {
		return err
	}
	if err := ValidateDigest("digest", a.Digest); err != nil {
		return err
	}
	if a.Size < 0 {
		return Errorf(CodeInvalid, "size is negative")
	}
	return ValidateHolders("holders", a.Holders)
}

// ValidateArtifactPath checks a run artifact's path: relative, '/'-
// separated, no empty, "." or ".." element.
func ValidateArtifactPath(p string) error {
	if p == "" || len(p) > MaxArtifactPathLen || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || strings.Contains(p, "\\") {
		return Errorf(CodeInvalid, "artifact path %.64q must be a relative path of 1 to %d bytes", p, MaxArtifactPathLen)
	}
	for _, e := range strings.Split(p, "/") {
		if e == "" || e == "." || e == ".." {
			return Errorf(CodeInvalid, "artifact path %.64q has an empty, . or .. element", p)
		}
	}
	return nil
}

// Tuning (DESIGN.md §7): a search over a base job's params, each trial a
// child job. Never renumber.
const (
	// TuningSubmitType records a new tuning run.
	TuningSubmitType MessageType = 42
	// TuningTrialType starts the next trial: it creates the trial's job and
	// records it on the tuning in one entry, at the index it names, so that
	// a new leader never starts a trial twice.
	TuningTrialType MessageType = 43
	// TuningUpdateType records the leader's decisions: trials stopped
	// early, the end, the best trial and its registered version.
	TuningUpdateType MessageType = 44
)

var _ = registerTypes(RangeTraining,
	TypeDef{TuningSubmitType, "tuning_submit"},
	TypeDef{TuningTrialType, "tuning_trial"},
	TypeDef{TuningUpdateType, "tuning_update"},
)

// Search kinds and parameter range kinds of a tuning.
const (
	SearchGrid   = "grid"
	SearchRandom = "random"

	RangeValues     = "values" // a grid axis, or random's choice
	RangeChoice     = "choice"
	RangeUniform    = "uniform"
	RangeLogUniform = "loguniform"
	RangeInt        = "int"

	StopMedian = "median"
	StopASHA   = "asha"

	GoalMaximize = "maximize"
	GoalMinimize = "minimize"
)

// Limits of a tuning.
const (
	MaxTuningTrials = 1000
	MaxTuningAxes   = 32
	MaxAxisValues   = 100
)

// ParamRange is one axis of a search space.
type ParamRange struct {
	Kind   string  `msgpack:"kind" json:"kind"`
	Values []any   `msgpack:"values,omitempty" json:"values,omitempty"`
	Min    float64 `msgpack:"min,omitempty" json:"min,omitempty"`
	Max    float64 `msgpack:"max,omitempty" json:"max,omitempty"`
}

// EarlyStopping stops trials that fall behind. Metric and Goal default to
// the tuning's; intermediate values are the trials' step metrics.
type EarlyStopping struct {
	Kind   string `msgpack:"kind" json:"kind"`
	Metric string `msgpack:"metric,omitempty" json:"metric,omitempty"`
	Goal   string `msgpack:"goal,omitempty" json:"goal,omitempty"`
	// MinSteps: median compares a trial from this step on (default 1).
	MinSteps int `msgpack:"min_steps,omitempty" json:"min_steps,omitempty"`
	// MinTrials: median needs this many finished trials (default 2).
	MinTrials int `msgpack:"min_trials,omitempty" json:"min_trials,omitempty"`
	// ASHA: the first rung's step (default 1) and the reduction factor
	// (default 3): rungs are at MinResource × Reduction^k steps, and at each
	// a trial goes on only within the best 1/Reduction of those that
	// reached it.
	MinResource int `msgpack:"min_resource,omitempty" json:"min_resource,omitempty"`
	Reduction   int `msgpack:"reduction,omitempty" json:"reduction,omitempty"`
}

// TuningSpec is what a user submits.
type TuningSpec struct {
	Name           string                `msgpack:"name" json:"name"`
	Job            JobSpec               `msgpack:"job" json:"job"`
	Search         string                `msgpack:"search" json:"search"`
	Space          map[string]ParamRange `msgpack:"space" json:"space"`
	MaxTrials      int                   `msgpack:"max_trials" json:"max_trials"`
	Parallelism    int                   `msgpack:"parallelism" json:"parallelism"`
	Metric         string                `msgpack:"metric" json:"metric"`
	Goal           string                `msgpack:"goal" json:"goal"`
	EarlyStopping  *EarlyStopping        `msgpack:"early_stopping,omitempty" json:"early_stopping,omitempty"`
	RegisterBestAs string                `msgpack:"register_best_as,omitempty" json:"register_best_as,omitempty"`
	Seed           uint64                `msgpack:"seed" json:"seed"`
}

// Trial is one child job of a tuning.
type Trial struct {
	Index  int            `msgpack:"index" json:"index"`
	JobID  string         `msgpack:"job_id" json:"job_id"`
	Params map[string]any `msgpack:"params" json:"params"`
	// StoppedEarly is set when early stopping cancelled the trial.
	StoppedEarly bool   `msgpack:"stopped_early,omitempty" json:"stopped_early,omitempty"`
	StopReason   string `msgpack:"stop_reason,omitempty" json:"stop_reason,omitempty"`
}

// Tuning is a submitted search and where it stands.
type Tuning struct {
	ID     string     `msgpack:"id" json:"id"`
	Spec   TuningSpec `msgpack:"spec" json:"spec"`
	State  string     `msgpack:"state" json:"state"` // running, succeeded, failed, cancelled
	Reason string     `msgpack:"reason,omitempty" json:"reason,omitempty"`
	Trials []Trial    `msgpack:"trials" json:"trials"`
	// BestTrial is the index of the best trial, -1 while none finished.
	BestTrial   int       `msgpack:"best_trial" json:"best_trial"`
	BestValue   float64   `msgpack:"best_value" json:"best_value"`
	BestVersion uint64    `msgpack:"best_version,omitempty" json:"best_version,omitempty"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	FinishedAt  time.Time `msgpack:"finished_at,omitempty" json:"finished_at,omitempty"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// Tuning states.
const (
	TuningRunning   = "running"
	TuningSucceeded = "succeeded"
	TuningFailed    = "failed"
)

// TuningSubmitRequest submits a tuning; the submitter makes the ID.
type TuningSubmitRequest struct {
	ID   string     `msgpack:"id"`
	Spec TuningSpec `msgpack:"spec"`
	At   time.Time  `msgpack:"at"`
}

// TuningTrialRequest starts trial Index with Params as job JobID.
type TuningTrialRequest struct {
	TuningID string         `msgpack:"tuning_id"`
	Index    int            `msgpack:"index"`
	JobID    string         `msgpack:"job_id"`
	Params   map[string]any `msgpack:"params"`
	At       time.Time      `msgpack:"at"`
}

// TuningUpdateRequest records stops and, with State, the end.
type TuningUpdateRequest struct {
	TuningID string `msgpack:"tuning_id"`
	// Stopped are trials early stopping cancelled, with the reason.
	Stopped     map[int]string `msgpack:"stopped,omitempty"`
	State       string         `msgpack:"state,omitempty"`
	Reason      string         `msgpack:"reason,omitempty"`
	BestTrial   int            `msgpack:"best_trial"`
	BestValue   float64        `msgpack:"best_value"`
	BestVersion uint64         `msgpack:"best_version,omitempty"`
	At          time.Time      `msgpack:"at"`
}

// Normalize fills a tuning spec's defaults.
func (s *TuningSpec) Normalize() {
	if s.Search == "" {
		s.Search = SearchGrid
	}
	if s.Parallelism == 0 {
		s.Parallelism = 1
	}
	if s.Goal == "" {
		s.Goal = GoalMaximize
	}
	if s.Job.Name == "" {
		s.Job.Name = s.Name
	}
	if s.Search == SearchGrid && s.MaxTrials == 0 {
		s.MaxTrials = min(s.GridSize(), MaxTuningTrials)
	}
	s.Job.Normalize()
	if e := s.EarlyStopping; e != nil {
		if e.Metric == "" {
			e.Metric = s.Metric
		}
		if e.Goal == "" {
			e.Goal = s.Goal
		}
		if e.MinSteps == 0 {
			e.MinSteps = 1
		}
		if e.MinTrials == 0 {
			e.MinTrials = 2
		}
		if e.MinResource == 0 {
			e.MinResource = 1
		}
		if e.Reduction == 0 {
			e.Reduction = 3
		}
	}
}

// GridSize is the number of points of a grid search (the product of its
// axes' lengths).
func (s *TuningSpec) GridSize() int {
	n := 1
	for _, r := range s.Space {
		n *= len(r.Values)
		if n > MaxTuningTrials {
			return MaxTuningTrials + 1
		}
	}
	return n
}

// Validate checks a normalized spec, naming the field at fault.
func (s *TuningSpec) Validate() error {
	if err := ValidateName("name", s.Name); err != nil {
		return err
	}
	if err := s.Job.Validate(); err != nil {
		return Errorf(CodeInvalid, "job: %v", err)
	}
	if s.Job.RegisterAs != "" {
		return Errorf(CodeInvalid, "job.register_as is not for trials: give register_best_as")
	}
	if len(s.Space) == 0 || len(s.Space) > MaxTuningAxes {
		return Errorf(CodeInvalid, "space must have 1 to %d parameters, not %d", MaxTuningAxes, len(s.Space))
	}
	for _, k := range sortedKeys(s.Space) {
		r := s.Space[k]
		if k == "" || len(k) > MaxTagKeyLen {
			return Errorf(CodeInvalid, "space key %.32q is empty or too long", k)
		}
		switch r.Kind {
		case RangeValues, RangeChoice:
			if len(r.Values) == 0 || len(r.Values) > MaxAxisValues {
				return Errorf(CodeInvalid, "space.%s.values must list 1 to %d values", k, MaxAxisValues)
			}
			for _, v := range r.Values {
				switch v.(type) {
				case float64, string, bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64:
				default:
					return Errorf(CodeInvalid, "space.%s.values: each value is a number, a string or a boolean", k)
				}
			}
		case RangeUniform, RangeInt:
			if !(r.Min <= r.Max) {
				return Errorf(CodeInvalid, "space.%s: min %g must not be above max %g", k, r.Min, r.Max)
			}
		case RangeLogUniform:
			if !(r.Min > 0 && r.Min <= r.Max) {
				return Errorf(CodeInvalid, "space.%s: loguniform needs 0 < min <= max, not %g and %g", k, r.Min, r.Max)
			}
		default:
			return Errorf(CodeInvalid, "space.%s.kind %q is unknown: use values, choice, uniform, loguniform or int", k, r.Kind)
		}
		if s.Search == SearchGrid && r.Kind != RangeValues && r.Kind != RangeChoice {
			return Errorf(CodeInvalid, "space.%s: a grid search takes value lists (kind values), not %s", k, r.Kind)
		}
	}
	switch s.Search {
	case SearchGrid, SearchRandom:
	default:
		return Errorf(CodeInvalid, "search %q is unknown: use grid or random", s.Search)
	}
	if s.MaxTrials < 1 || s.MaxTrials > MaxTuningTrials {
		return Errorf(CodeInvalid, "max_trials must be from 1 to %d, not %d", MaxTuningTrials, s.MaxTrials)
	}
	if s.Parallelism < 1 || s.Parallelism > s.MaxTrials {
		return Errorf(CodeInvalid, "parallelism must be from 1 to max_trials (%d), not %d", s.MaxTrials, s.Parallelism)
	}
	if err := ValidateTrackingKey("metric", s.Metric); err != nil {
		return err
	}
	if s.Goal != GoalMaximize && s.Goal != GoalMinimize {
		return Errorf(CodeInvalid, "goal %q is unknown: use maximize or minimize", s.Goal)
	}
	if e := s.EarlyStopping; e != nil {
		switch e.Kind {
		case StopMedian, StopASHA:
		default:
			return Errorf(CodeInvalid, "early_stopping.kind %q is unknown: use median or asha", e.Kind)
		}
		if err := ValidateTrackingKey("early_stopping.metric", e.Metric); err != nil {
			return err
		}
		if e.Goal != GoalMaximize && e.Goal != GoalMinimize {
			return Errorf(CodeInvalid, "early_stopping.goal %q is unknown: use maximize or minimize", e.Goal)
		}
		if e.MinSteps < 1 || e.MinTrials < 1 || e.MinResource < 1 || e.Reduction < 2 {
			return Errorf(CodeInvalid, "early_stopping: min_steps, min_trials and min_resource are at least 1, reduction at least 2")
		}
	}
	if s.RegisterBestAs != "" {
		if err := ValidateName("register_best_as", s.RegisterBestAs); err != nil {
			return err
		}
	}
	return nil
}
