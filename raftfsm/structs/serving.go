package structs

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Serving commands (DESIGN.md §6), in RangeServing. Never renumber; a new one
// takes the next free number of the range (22; 15-19 are access control's).
const (
	// VersionCreateType records a model version whose artifact is already
	// stored on the holders it names. Apply assigns the next version number.
	VersionCreateType MessageType = 7
	// VersionDeleteType removes a version that no deployment uses.
	VersionDeleteType MessageType = 8
	// AliasSetType points an alias of a model at a version, or removes it.
	AliasSetType MessageType = 9
	// DeploymentPutType creates or replaces a deployment's spec.
	DeploymentPutType MessageType = 10
	// DeploymentRollbackType restores a deployment's previous traffic.
	DeploymentRollbackType MessageType = 11
	// DeploymentDeleteType removes a deployment and its allocations.
	DeploymentDeleteType MessageType = 12
	// AllocPlanType is the leader's placement decision: allocations to add
	// and to remove, applied together.
	AllocPlanType MessageType = 13
	// AllocStatusType carries replica states reported by the nodes running them.
	AllocStatusType MessageType = 14
	// AllocPlanFitType is AllocPlanType whose Apply also re-checks that each
	// add fits its node (GPUs, memory, one replica per version) against the
	// state it applies to. It is a type of its own so that entries of type 13,
	// written before, replay as they applied then, and a binary that predates
	// the check stops on it rather than apply it unchecked and diverge.
	AllocPlanFitType MessageType = 20
	// VersionHoldersType records the nodes that hold a version's artifact,
	// after the leader had copies made to replace lost ones.
	VersionHoldersType MessageType = 21
)

var _ = registerTypes(RangeServing,
	TypeDef{VersionCreateType, "version_create"},
	TypeDef{VersionDeleteType, "version_delete"},
	TypeDef{AliasSetType, "alias_set"},
	TypeDef{DeploymentPutType, "deployment_put"},
	TypeDef{DeploymentRollbackType, "deployment_rollback"},
	TypeDef{DeploymentDeleteType, "deployment_delete"},
	TypeDef{AllocPlanType, "alloc_plan"},
	TypeDef{AllocStatusType, "alloc_status"},
	TypeDef{AllocPlanFitType, "alloc_plan_fit"},
	TypeDef{VersionHoldersType, "version_holders"},
)

// Formats a version may have. The runtimes live in ml/; "process" runs a
// user's own server (actors/serving).
var Formats = []string{"linear", "lightgbm", "xgboost", "xgboost-json", "onnx", "process"}

// FormatProcess is the format of versions served by a user's process.
const FormatProcess = "process"

// Limits on serving records.
const (
	// MaxPredictTimeoutMS bounds a deployment's timeout_ms: ten minutes.
	MaxPredictTimeoutMS = 600_000
	MaxMetadata         = 64
	MaxSchemaTensors    = 256
	MaxFeatureNames     = 1 << 14
	MaxTrafficVersions  = 16
	MaxReplicas         = 64
	MaxRollbackHistory  = 16
	MaxAliases          = 32
	MaxProcessArgs      = 256
	MaxAllocMessageLen  = 1024
	MaxReplicaGPUs      = 64
	MaxReplicaThreads   = 256
)

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidateDigest checks a sha256 digest in lowercase hex.
func ValidateDigest(field, d string) error {
	if !digestRE.MatchString(d) {
		return Errorf(CodeInvalid, "%s %q is not a sha256 digest (64 lowercase hex characters)", field, d)
	}
	return nil
}

// VersionMap maps names to version numbers (a model's aliases). It encodes
// with its keys sorted: msgpack v5 sorts only maps of strings, bools and
// interfaces, and a stored record must be the same bytes on every node.
type VersionMap map[string]uint64

// EncodeMsgpack writes the map with sorted keys.
func (m VersionMap) EncodeMsgpack(enc *msgpack.Encoder) error {
	if m == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, k := range sortedKeys(m) {
		if err := enc.EncodeString(k); err != nil {
			return err
		}
		if err := enc.EncodeUint(m[k]); err != nil {
			return err
		}
	}
	return nil
}

// TensorSpec describes one input or output of a model version; a dimension of
// -1 is free. It mirrors ml.TensorSpec, which raftfsm may not import.
type TensorSpec struct {
	Name     string `msgpack:"name" json:"name"`
	DataType string `msgpack:"datatype" json:"datatype"`
	Shape    []int  `msgpack:"shape" json:"shape"`
}

// Schema is a version's inputs and outputs, read from the model file where the
// format has them, else given at upload.
type Schema struct {
	Inputs       []TensorSpec `msgpack:"inputs" json:"inputs"`
	Outputs      []TensorSpec `msgpack:"outputs" json:"outputs"`
	FeatureNames []string     `msgpack:"feature_names,omitempty" json:"feature_names,omitempty"`
}

// Validate checks the schema's sizes.
func (s *Schema) Validate() error {
	if len(s.Inputs) > MaxSchemaTensors || len(s.Outputs) > MaxSchemaTensors {
		return Errorf(CodeInvalid, "schema has more than %d inputs or outputs", MaxSchemaTensors)
	}
	if len(s.FeatureNames) > MaxFeatureNames {
		return Errorf(CodeInvalid, "schema.feature_names has more than %d names", MaxFeatureNames)
	}
	for i, t := range append(append([]TensorSpec{}, s.Inputs...), s.Outputs...) {
		if len(t.Shape) > 8 {
			return Errorf(CodeInvalid, "schema tensor %d (%q) has more than 8 dimensions", i, t.Name)
		}
	}
	return nil
}

// Lineage ties a version to what produced it; training fills it.
type Lineage struct {
	JobID   string `msgpack:"job_id,omitempty" json:"job_id,omitempty"`
	RunID   string `msgpack:"run_id,omitempty" json:"run_id,omitempty"`
	Dataset string `msgpack:"dataset,omitempty" json:"dataset,omitempty"`
}

// ProcessSpec is how a "process" version is served: each replica runs Command
// with KILN_PORT (and CUDA_VISIBLE_DEVICES) set, and speaks the Open Inference
// Protocol v2 over REST on that port. An uploaded artifact, if any, is passed as
// KILN_MODEL_PATH.
type ProcessSpec struct {
	Command []string          `msgpack:"command" json:"command"`
	Env     map[string]string `msgpack:"env,omitempty" json:"env,omitempty"`
	// ModelName is the name the process serves under /v2/models/{name};
	// empty means the Kiln model's name.
	ModelName string `msgpack:"model_name,omitempty" json:"model_name,omitempty"`
}

// Validate checks a process spec.
func (p *ProcessSpec) Validate() error {
	if len(p.Command) == 0 || p.Command[0] == "" {
		return Errorf(CodeInvalid, "process.command is required for format %q", FormatProcess)
	}
	if len(p.Command) > MaxProcessArgs {
		return Errorf(CodeInvalid, "process.command has more than %d arguments", MaxProcessArgs)
	}
	if len(p.Env) > MaxMetadata {
		return Errorf(CodeInvalid, "process.env has more than %d keys", MaxMetadata)
	}
	for _, k := range sortedKeys(p.Env) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return Errorf(CodeInvalid, "process.env key %q is invalid", k)
		}
	}
	return nil
}

// ModelVersion is one immutable version of a model: its artifact and what it
// takes. Version numbers start at 1 and are assigned by Apply.
type ModelVersion struct {
	Model   string `msgpack:"model" json:"model"`
	Version uint64 `msgpack:"version" json:"version"`
	Format  string `msgpack:"format" json:"format"`
	// Digest is the sha256 of the artifact, empty for a process version
	// uploaded without a file. Size is its length in bytes.
	Digest string `msgpack:"digest" json:"digest"`
	Size   int64  `msgpack:"size" json:"size"`
	Schema Schema `msgpack:"schema" json:"schema"`
	// Runtime names what loaded the file when it was pushed (for ONNX,
	// "onnxruntime 1.30.0" or "gonnx v1.1.0"): the node checks every
	// artifact in the runtime that will serve it.
	Runtime  string            `msgpack:"runtime,omitempty" json:"runtime,omitempty"`
	Metadata map[string]string `msgpack:"metadata" json:"metadata"`
	Lineage  Lineage           `msgpack:"lineage" json:"lineage"`
	Process  *ProcessSpec      `msgpack:"process,omitempty" json:"process,omitempty"`
	// Holders are the nodes that store the artifact: those that stored it
	// before the version was committed, then as the leader replaces lost
	// copies (VersionHoldersType). Others fetch it from them on demand.
	Holders     []string  `msgpack:"holders" json:"holders"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
}

// Validate checks a version before it is proposed, and again in Apply.
func (v *ModelVersion) Validate() error {
	if err := ValidateName("model", v.Model); err != nil {
		return err
	}
	if !isFormat(v.Format) {
		return Errorf(CodeInvalid, "format %q is unknown: use one of %s", v.Format, strings.Join(Formats, ", "))
	}
	if v.Format == FormatProcess {
		if v.Process == nil {
			return Errorf(CodeInvalid, "process is required for format %q", FormatProcess)
		}
		if err := v.Process.Validate(); err != nil {
			return err
		}
	} else if v.Process != nil {
		return Errorf(CodeInvalid, "process is only allowed with format %q", FormatProcess)
	}
	if v.Digest != "" || v.Format != FormatProcess {
		if err := ValidateDigest("digest", v.Digest); err != nil {
			return err
		}
		if len(v.Holders) == 0 {
			return Errorf(CodeInvalid, "holders is empty: the artifact must be stored before the version is recorded")
		}
	}
	if v.Size < 0 {
		return Errorf(CodeInvalid, "size is negative")
	}
	if err := v.Schema.Validate(); err != nil {
		return err
	}
	if len(v.Metadata) > MaxMetadata {
		return Errorf(CodeInvalid, "metadata has %d keys, more than %d", len(v.Metadata), MaxMetadata)
	}
	for _, k := range sortedKeys(v.Metadata) {
		if k == "" || len(k) > MaxTagKeyLen || len(v.Metadata[k]) > MaxTagValueLen {
			return Errorf(CodeInvalid, "metadata key %.32q is empty or too long, or its value is longer than %d bytes", k, MaxTagValueLen)
		}
	}
	return nil
}

func isFormat(f string) bool {
	for _, x := range Formats {
		if f == x {
			return true
		}
	}
	return false
}

// VersionCreateRequest records a version; Apply fills Version and CreateIndex.
type VersionCreateRequest struct {
	Version ModelVersion `msgpack:"version"`
}

// VersionDeleteRequest removes one version.
type VersionDeleteRequest struct {
	Model   string `msgpack:"model"`
	Version uint64 `msgpack:"version"`
}

// AliasSetRequest points Alias at Version; Version 0 removes the alias.
type AliasSetRequest struct {
	Model     string    `msgpack:"model"`
	Alias     string    `msgpack:"alias"`
	Version   uint64    `msgpack:"version"`
	UpdatedAt time.Time `msgpack:"updated_at"`
}

// TrafficSplit sends Weight parts of a deployment's traffic to Version.
type TrafficSplit struct {
	Version uint64 `msgpack:"version" json:"version"`
	Weight  int    `msgpack:"weight" json:"weight"`
}

// Traffic is a deployment's routing: weighted versions and an optional shadow
// version that gets a copy of every request, its answer discarded.
type Traffic struct {
	Versions []TrafficSplit `msgpack:"versions" json:"versions"`
	Shadow   uint64         `msgpack:"shadow,omitempty" json:"shadow,omitempty"`
}

// ServedVersions lists every version the traffic needs replicas of, the
// weighted ones in order, then the shadow.
func (t *Traffic) ServedVersions() []uint64 {
	out := make([]uint64, 0, len(t.Versions)+1)
	for _, s := range t.Versions {
		out = append(out, s.Version)
	}
	if t.Shadow != 0 {
		out = append(out, t.Shadow)
	}
	return out
}

// Validate checks weights and versions (not that the versions exist).
func (t *Traffic) Validate() error {
	if len(t.Versions) == 0 {
		return Errorf(CodeInvalid, "versions is empty: name at least one version with a weight")
	}
	if len(t.Versions) > MaxTrafficVersions {
		return Errorf(CodeInvalid, "versions has %d entries, more than %d", len(t.Versions), MaxTrafficVersions)
	}
	seen := map[uint64]bool{}
	total := 0
	for i, s := range t.Versions {
		if s.Version == 0 {
			return Errorf(CodeInvalid, "versions[%d].version is required (versions start at 1)", i)
		}
		if seen[s.Version] {
			return Errorf(CodeInvalid, "versions[%d].version %d is listed twice", i, s.Version)
		}
		seen[s.Version] = true
		if s.Weight < 0 || s.Weight > 1000 {
			return Errorf(CodeInvalid, "versions[%d].weight %d is out of range 0..1000", i, s.Weight)
		}
		total += s.Weight
	}
	if total == 0 {
		return Errorf(CodeInvalid, "versions: the weights add up to 0; at least one must be positive")
	}
	if t.Shadow != 0 && seen[t.Shadow] {
		return Errorf(CodeInvalid, "shadow version %d also takes weighted traffic", t.Shadow)
	}
	return nil
}

// Batching merges concurrent requests to one replica into one model call.
type Batching struct {
	MaxBatch  int `msgpack:"max_batch" json:"max_batch"`
	MaxWaitMS int `msgpack:"max_wait_ms" json:"max_wait_ms"`
}

// ReplicaResources is what one replica needs on its node. MemoryMB is added
// to the artifact's size when placing; GPUs reserves whole devices.
type ReplicaResources struct {
	MemoryMB int64 `msgpack:"memory_mb" json:"memory_mb"`
	GPUs     int   `msgpack:"gpus" json:"gpus"`
	// Threads is the runtime's intra-op thread count per replica (ONNX
	// Runtime); 0 means 1, since replicas and their workers already run
	// requests in parallel.
	Threads int `msgpack:"threads,omitempty" json:"threads,omitempty"`
}

// Deployment serves a model: which versions take traffic, how many replicas
// each has, and how requests are batched. Its name is the model's name.
type Deployment struct {
	Name      string           `msgpack:"name" json:"name"`
	Traffic   Traffic          `msgpack:"traffic" json:"traffic"`
	Replicas  int              `msgpack:"replicas" json:"replicas"`
	Batching  Batching         `msgpack:"batching" json:"batching"`
	Resources ReplicaResources `msgpack:"resources" json:"resources"`
	// TimeoutMS bounds one prediction on the server, in milliseconds; 0
	// means the node's serving.predict_timeout.
	TimeoutMS int64 `msgpack:"timeout_ms,omitempty" json:"timeout_ms"`
	// FeatureService, when set, lets :predict take entities instead of
	// inputs: the node that takes the request looks their features up and
	// builds the model's input from them.
	FeatureService string `msgpack:"feature_service,omitempty" json:"feature_service,omitempty"`
	// History holds earlier traffic configs, the most recent last; rollback
	// pops it.
	History     []Traffic `msgpack:"history" json:"history"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	UpdatedAt   time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// Validate checks a deployment's own fields.
func (d *Deployment) Validate() error {
	if err := ValidateName("name", d.Name); err != nil {
		return err
	}
	if err := d.Traffic.Validate(); err != nil {
		return err
	}
	if d.FeatureService != "" {
		if err := ValidateName("feature_service", d.FeatureService); err != nil {
			return err
		}
	}
	if d.Replicas < 1 || d.Replicas > MaxReplicas {
		return Errorf(CodeInvalid, "replicas %d is out of range 1..%d", d.Replicas, MaxReplicas)
	}
	if d.Batching.MaxBatch < 0 || d.Batching.MaxBatch > 4096 {
		return Errorf(CodeInvalid, "batching.max_batch %d is out of range 0..4096", d.Batching.MaxBatch)
	}
	if d.Batching.MaxWaitMS < 0 || d.Batching.MaxWaitMS > 1000 {
		return Errorf(CodeInvalid, "batching.max_wait_ms %d is out of range 0..1000", d.Batching.MaxWaitMS)
	}
	if d.TimeoutMS < 0 || d.TimeoutMS > MaxPredictTimeoutMS {
		return Errorf(CodeInvalid, "timeout_ms %d is out of range 0..%d", d.TimeoutMS, MaxPredictTimeoutMS)
	}
	if d.Resources.MemoryMB < 0 {
		return Errorf(CodeInvalid, "resources.memory_mb is negative")
	}
	if d.Resources.GPUs < 0 || d.Resources.GPUs > 64 {
		return Errorf(CodeInvalid, "resources.gpus %d is out of range 0..64", d.Resources.GPUs)
	}
	if d.Resources.Threads < 0 || d.Resources.Threads > MaxReplicaThreads {
		return Errorf(CodeInvalid, "resources.threads %d is out of range 0..%d", d.Resources.Threads, MaxReplicaThreads)
	}
	return nil
}

// DeploymentPutRequest creates or replaces a deployment. An existing
// deployment's traffic is pushed onto its history when it changes.
type DeploymentPutRequest struct {
	Deployment Deployment `msgpack:"deployment"`
}

// DeploymentRollbackRequest restores the most recent traffic in history.
type DeploymentRollbackRequest struct {
	Name      string    `msgpack:"name"`
	UpdatedAt time.Time `msgpack:"updated_at"`
}

// DeploymentDeleteRequest removes a deployment and its allocations.
type DeploymentDeleteRequest struct {
	Name string `msgpack:"name"`
}

// Allocation states.
const (
	AllocPending = "pending" // placed, not yet reported by its node
	AllocRunning = "running" // loaded and answering
	AllocFailed  = "failed"  // its node gave up on it; the leader re-places it
)

// Allocation is one replica of a model version placed on a node. Its
// CreateIndex is the generation of the shard actor that runs it (fencing).
type Allocation struct {
	ID         string `msgpack:"id" json:"id"`
	Deployment string `msgpack:"deployment" json:"deployment"`
	Version    uint64 `msgpack:"version" json:"version"`
	NodeID     string `msgpack:"node_id" json:"node_id"`
	// GPUs are the device indices reserved on the node, if any.
	GPUs        []int     `msgpack:"gpus,omitempty" json:"gpus,omitempty"`
	MemoryMB    int64     `msgpack:"memory_mb" json:"memory_mb"`
	State       string    `msgpack:"state" json:"state"`
	Message     string    `msgpack:"message,omitempty" json:"message,omitempty"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// Validate checks an allocation record as the leader's placement makes it.
// Apply does not call it (an AllocPlan entry already in a log must apply the
// same way on every binary); a snapshot restore does, because the ID becomes a
// directory name on the node that runs the replica.
func (a *Allocation) Validate() error {
	if err := ValidateID("id", a.ID); err != nil {
		return err
	}
	if err := ValidateName("deployment", a.Deployment); err != nil {
		return err
	}
	if a.Version == 0 {
		return Errorf(CodeInvalid, "version is required (versions start at 1)")
	}
	if a.NodeID == "" || len(a.NodeID) > MaxNodeIDLen {
		return Errorf(CodeInvalid, "node_id is empty or longer than %d bytes", MaxNodeIDLen)
	}
	if a.MemoryMB < 0 {
		return Errorf(CodeInvalid, "memory_mb is negative")
	}
	if len(a.GPUs) > MaxReplicaGPUs {
		return Errorf(CodeInvalid, "gpus has %d devices, more than %d", len(a.GPUs), MaxReplicaGPUs)
	}
	for i, g := range a.GPUs {
		if g < 0 {
			return Errorf(CodeInvalid, "gpus[%d] is negative", i)
		}
	}
	switch a.State {
	case AllocPending, AllocRunning, AllocFailed:
	default:
		return Errorf(CodeInvalid, "state %q is not one of %s, %s, %s", a.State, AllocPending, AllocRunning, AllocFailed)
	}
	if len(a.Message) > MaxAllocMessageLen {
		return Errorf(CodeInvalid, "message is longer than %d bytes", MaxAllocMessageLen)
	}
	return nil
}

// AllocPlanRequest adds and removes allocations in one step.
type AllocPlanRequest struct {
	Add    []Allocation `msgpack:"add"`
	Remove []string     `msgpack:"remove"`
}

// AllocStatusUpdate is one replica's state as its node sees it.
type AllocStatusUpdate struct {
	ID      string `msgpack:"id"`
	NodeID  string `msgpack:"node_id"`
	State   string `msgpack:"state"`
	Message string `msgpack:"message"`
}

// AllocStatusRequest reports replica states. An update from a node that does
// not own the allocation, or for one that is gone, is skipped: the report is
// stale, not wrong.
type AllocStatusRequest struct {
	Updates []AllocStatusUpdate `msgpack:"updates"`
}

// idRE is the form of NewID's IDs: 26 characters of its alphabet, the first
// carrying only the top 3 bits of 128.
var idRE = regexp.MustCompile(`^[0-7][0-9a-hjkmnp-tv-z]{25}$`)

// ValidateID checks that id has the form NewID gives it. Such IDs name files
// and directories on nodes, so nothing else (no '/', no "..") may pass.
func ValidateID(field, id string) error {
	if !idRE.MatchString(id) {
		return Errorf(CodeInvalid, "%s %.40q is not an ID as Kiln makes them (26 characters of 0-9 and a-z without i, l, o, u)", field, id)
	}
	return nil
}

// NewID returns a sortable unique ID: 48 bits of milliseconds since the Unix
// epoch, then 80 random bits, in Crockford base32 (26 characters). IDs are made
// by proposers, never in Apply.
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("structs: crypto/rand failed: %v", err))
	}
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	out := make([]byte, 26)
	// 128 bits read 5 at a time from the most significant end; the first
	// character carries the top 3 bits.
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out)
}

// VersionHoldersRequest replaces the holders of a version's artifact. Digest
// guards against a version deleted and re-created meanwhile: it must match.
type VersionHoldersRequest struct {
	Model   string   `msgpack:"model"`
	Version uint64   `msgpack:"version"`
	Digest  string   `msgpack:"digest"`
	Holders []string `msgpack:"holders"`
}

// MaxHolders bounds the holders of one artifact.
const MaxHolders = 64

// Validate checks the request, naming the field at fault.
func (r *VersionHoldersRequest) Validate() error {
	if err := ValidateName("model", r.Model); err != nil {
		return err
	}
	if r.Version == 0 {
		return Errorf(CodeInvalid, "version is required")
	}
	if err := ValidateDigest("digest", r.Digest); err != nil {
		return err
	}
	return ValidateHolders("holders", r.Holders)
}

// ValidateHolders checks a blob's holders: 1 to MaxHolders node IDs, each
// once. field names the field in the error.
func ValidateHolders(field string, holders []string) error {
	if len(holders) == 0 || len(holders) > MaxHolders {
		return Errorf(CodeInvalid, "%s must name from 1 to %d nodes, not %d", field, MaxHolders, len(holders))
	}
	for i, h := range holders {
		if h == "" || len(h) > 64 {
			return Errorf(CodeInvalid, "%s[%d] %q is not a node ID", field, i, h)
		}
		for _, o := range holders[:i] {
			if o == h {
				return Errorf(CodeInvalid, "%s[%d] %q is listed twice", field, i, h)
			}
		}
	}
	return nil
}
