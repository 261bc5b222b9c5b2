package node

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/actors/training"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/formats"
	"github.com/kilnml/kiln/ml/train"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The work of evaluate steps, on the leader where run actors live.

// evalBatch is how many rows one Predict call scores.
const evalBatch = 4096

// Evaluate scores a model version on a dataset version, and the model's
// champion (the version its deployment weighs most) on the same rows. With
// no champion, or when the candidate is the champion, the champion's
// metrics are the candidate's: a first model passes a gate that asks it to
// be no worse than the champion.
func (h pipelineHost) Evaluate(ctx context.Context, e structs.EvaluateStep) (metrics, champion map[string]float64, err error) {
	a := h.a
	ver, err := strconv.ParseUint(e.Version, 10, 64)
	if err != nil || ver == 0 {
		return nil, nil, fmt.Errorf("evaluate.version %q is not a version number", e.Version)
	}
	name, n, err := structs.ParseDatasetRef("evaluate.dataset", e.Dataset)
	if err != nil {
		return nil, nil, err
	}
	txn := a.fsm.ReadTxn()
	mv, err := txn.Version(e.Model, ver)
	if err != nil {
		txn.Discard()
		return nil, nil, err
	}
	dv, err := txn.DatasetVersion(name, n)
	if err != nil {
		txn.Discard()
		return nil, nil, err
	}
	var champ *structs.ModelVersion
	if d, err := txn.Deployment(e.Model); err == nil && len(d.Traffic.Versions) > 0 {
		top := slices.MaxFunc(d.Traffic.Versions, func(x, y structs.TrafficSplit) int { return x.Weight - y.Weight })
		if top.Version != ver {
			champ, _ = txn.Version(e.Model, top.Version)
		}
	}
	txn.Discard()
	dpath, err := a.xfer.Ensure(ctx, dv.Digest, dv.Holders)
	if err != nil {
		return nil, nil, fmt.Errorf("fetching %s: %w", dv.Ref(), err)
	}
	if metrics, err = a.scoreVersion(ctx, mv, dv, dpath, e.Target); err != nil {
		return nil, nil, err
	}
	champion = metrics
	if champ != nil {
		if champion, err = a.scoreVersion(ctx, champ, dv, dpath, e.Target); err != nil {
			return nil, nil, fmt.Errorf("scoring the champion, version %d: %w", champ.Version, err)
		}
	}
	return metrics, champion, nil
}

// loadInProcess loads a model version in this process, off the serving
// path, to score a dataset with it (fetching its file if need be); release
// frees what the runtime holds.
func (a *Agent) loadInProcess(ctx context.Context, mv *structs.ModelVersion) (ml.Model, func(), error) {
	if !formats.Supported(mv.Format) {
		return nil, nil, fmt.Errorf("version %d of %s is a %s model, which Kiln does not run in-process", mv.Version, mv.Model, mv.Format)
	}
	path, err := a.xfer.Ensure(ctx, mv.Digest, mv.Holders)
	if err != nil {
		return nil, nil, fmt.Errorf("fetching version %d of %s: %w", mv.Version, mv.Model, err)
	}
	m, err := a.models.Load(mv.Format, path, ml.CPUOnly)
	if err != nil {
		return nil, nil, err
	}
	release := func() {}
	if c, ok := m.(ml.Closer); ok {
		release = func() { c.Close() }
	}
	return m, release, nil
}

// scoreVersion predicts a dataset version's rows with a model version and
// scores the predictions against the target. The task comes from the
// model's output: one column per class is a classifier (two: binary, the
// second column the positive class's probability); one column is binary
// when the target has two labels, else a regression.
func (a *Agent) scoreVersion(ctx context.Context, mv *structs.ModelVersion, dv *structs.DatasetVersion, dpath, target string) (map[string]float64, error) {
	m, release, err := a.loadInProcess(ctx, mv)
	if err != nil {
		return nil, err
	}
	defer release()
	task := train.Regression
	if col := columnIndex(dv.Columns, target); col >= 0 {
		c := dv.Columns[col]
		if c.Type == "string" || c.Type == "bool" || (c.Categorical != nil && c.Categorical.Exact && c.Categorical.Distinct == 2) ||
			(c.Numeric != nil && c.Type == "int" && c.Numeric.Min == 0 && c.Numeric.Max == 1) {
			task = train.Binary
		}
	}
	width := 1
	if outs := mv.Schema.Outputs; len(outs) > 0 && len(outs[0].Shape) == 2 && outs[0].Shape[1] > 1 {
		width = outs[0].Shape[1]
		task = train.Binary
		if width > 2 {
			task = train.Multiclass
		}
	}
	fr, _, err := training.LoadFrame(ctx, training.FrameSpec{Version: dv, Path: dpath, Target: target, Features: mv.Schema.FeatureNames, Task: task})
	if err != nil {
		return nil, err
	}
	input := ""
	if len(mv.Schema.Inputs) > 0 {
		input = mv.Schema.Inputs[0].Name
	}
	k := 1
	if task == train.Multiclass {
		k = width
	}
	pred := make([]float64, 0, fr.Rows*k)
	for lo := 0; lo < fr.Rows; lo += evalBatch {
		hi := min(lo+evalBatch, fr.Rows)
		in := ml.Tensor{Name: input, Shape: []int{hi - lo, fr.Cols}, Data: fr.X[lo*fr.Cols : hi*fr.Cols]}
		out, err := ml.Guard(ctx, m, []ml.Tensor{in})
		if err != nil {
			return nil, fmt.Errorf("scoring rows %d-%d: %w", lo+1, hi, err)
		}
		if len(out) == 0 || out[0].Len() == 0 {
			return nil, fmt.Errorf("the model gave no output")
		}
		o := out[0]
		cols := o.Len() / (hi - lo)
		data := o.Data
		for r := range hi - lo {
			row := data[r*cols : (r+1)*cols]
			switch {
			case task == train.Multiclass:
				pred = append(pred, row...)
			case cols == 2:
				pred = append(pred, row[1])
			default:
				pred = append(pred, row[0])
			}
		}
	}
	return train.Evaluate(task, k, fr.Y, pred), nil
}

// Deployment reads a model's deployment.
func (h pipelineHost) Deployment(model string) (*structs.Deployment, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.Deployment(model)
}

// SetTraffic sets a deployment's weighted versions, keeping the rest of
// it; a model without a deployment gets one, of one replica.
func (h pipelineHost) SetTraffic(ctx context.Context, model string, versions []structs.TrafficSplit) error {
	now := time.Now().UTC()
	d := structs.Deployment{Name: model, Replicas: 1, CreatedAt: now}
	if old, err := h.Deployment(model); err == nil {
		d = *old
	} else if structs.ErrorCode(err) != structs.CodeNotFound {
		return err
	}
	d.Traffic = structs.Traffic{Versions: versions, Shadow: d.Traffic.Shadow}
	if d.Traffic.Shadow != 0 && slices.ContainsFunc(versions, func(t structs.TrafficSplit) bool { return t.Version == d.Traffic.Shadow }) {
		d.Traffic.Shadow = 0
	}
	d.History, d.UpdatedAt = nil, now
	if err := d.Validate(); err != nil {
		return err
	}
	_, err := h.a.propose(ctx, structs.DeploymentPutType, &structs.DeploymentPutRequest{Deployment: d}, nil)
	return err
}

// VersionStats is a version's requests, errors and p99 latency across the
// cluster, since each node's start.
func (h pipelineHost) VersionStats(ctx context.Context, model string, version uint64) (requests, errors uint64, p99ms float64) {
	stats, _ := h.a.clusterStats(ctx, model, false)
	for _, s := range stats {
		if s.Version == version {
			return s.Requests, s.Errors, s.P99MS
		}
	}
	return 0, 0, 0
}

// SubmitTuning submits a tuning under an ID the step's attempt gives.
func (h pipelineHost) SubmitTuning(ctx context.Context, id string, spec structs.TuningSpec) error {
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return err
	}
	_, err := h.a.propose(ctx, structs.TuningSubmitType, &structs.TuningSubmitRequest{ID: id, Spec: spec, At: time.Now().UTC()}, nil)
	if structs.ErrorCode(err) == structs.CodeConflict {
		if _, terr := h.Tuning(id); terr == nil {
			return nil
		}
	}
	return err
}

// Tuning reads a tuning.
func (h pipelineHost) Tuning(id string) (*structs.Tuning, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.Tuning(id)
}

// Alert reads an alert rule's alert.
func (h pipelineHost) Alert(rule string) (*structs.Alert, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.Alert(rule)
}

// LatestDataset reads a dataset's latest version.
func (h pipelineHost) LatestDataset(name string) (*structs.DatasetVersion, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.DatasetVersion(name, 0)
}

// InputDigests lists the digests of the dataset and model versions a
// resolved step reads; a dataset named without a version counts as its
// latest, so that new data is a new input.
func (h pipelineHost) InputDigests(s *structs.StepSpec) ([]string, error) {
	var datasets []string
	type modelRef struct{ model, version string }
	var models []modelRef
	if j := s.Job; j != nil {
		datasets = append(datasets, j.Dataset, j.Validation.Dataset)
		if f := j.FeatureFrame; f != nil {
			datasets = append(datasets, f.EntityRows)
		}
	}
	if t := s.Tuning; t != nil {
		datasets = append(datasets, t.Job.Dataset, t.Job.Validation.Dataset)
	}
	if f := s.Features; f != nil {
		datasets = append(datasets, f.EntityRows)
	}
	if e := s.Evaluate; e != nil {
		datasets = append(datasets, e.Dataset)
		models = append(models, modelRef{e.Model, e.Version})
	}
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	var out []string
	for _, ref := range datasets {
		if ref == "" {
			continue
		}
		name, n, err := structs.ParseDatasetRef("dataset", ref)
		if err != nil {
			return nil, err
		}
		v, err := txn.DatasetVersion(name, n)
		if err != nil {
			return nil, err
		}
		out = append(out, v.Ref()+"@"+v.Digest)
	}
	for _, m := range models {
		n, err := strconv.ParseUint(m.version, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("model version %q is not a number", m.version)
		}
		v, err := txn.Version(m.model, n)
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s:%d@%s", m.model, n, v.Digest))
	}
	if s.Features != nil {
		// A frame reads feature values too: their state is the views'
		// write counters, which a frame's lineage records.
		q, err := resolveFeatures(txn, s.Features.Service, nil)
		if err != nil {
			return nil, err
		}
		for _, vq := range q.views {
			out = append(out, fmt.Sprintf("view %s@%d/%d", vq.view.Name, vq.view.ModifyIndex, vq.view.Rows))
		}
	}
	return out, nil
}

// CacheGet reads a step's cached outputs.
func (h pipelineHost) CacheGet(pipeline, step, key string) (map[string]string, bool) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	e, err := txn.StepCache(pipeline, step, key)
	if err != nil {
		return nil, false
	}
	return e.Outputs, true
}

// CachePut records a step's outputs for the digest of its inputs.
func (h pipelineHost) CachePut(ctx context.Context, e *structs.StepCacheEntry) error {
	_, err := h.a.propose(ctx, structs.PipelineCachePutType, e, nil)
	return err
}

// Authorize checks a step against the rights of the token that applied
// its pipeline, as they are now: a pipeline never does more than its
// author may. Without ACLs every step may run.
func (h pipelineHost) Authorize(run *structs.PipelineRun, s *structs.StepSpec) error {
	a := h.a
	if a.acl == nil {
		return nil
	}
	if run.AppliedByHash == "" {
		return structs.Errorf(structs.CodePermissionDenied, "pipeline %s was applied without a token; apply it again with one", run.Pipeline)
	}
	id, err := a.acl.ResolveHash(run.AppliedByHash)
	if err != nil {
		return structs.Errorf(structs.CodePermissionDenied, "the token that applied pipeline %s (%s) can no longer act: %v", run.Pipeline, run.AppliedBy, err)
	}
	type need struct {
		kind   structs.ACLKind
		name   string
		access structs.ACLAccess
	}
	var needs []need
	switch s.Type {
	case structs.StepTrain:
		needs = append(needs, need{structs.KindJob, s.Job.Name, structs.AccessWrite})
		if s.Job.Trainer.Kind == structs.TrainerProcess {
			needs = append(needs, need{structs.KindExec, "", structs.AccessAllow})
		}
		if s.Job.RegisterAs != "" {
			needs = append(needs, need{structs.KindModel, s.Job.RegisterAs, structs.AccessWrite})
		}
	case structs.StepCommand:
		needs = append(needs, need{structs.KindJob, run.Pipeline + "-" + s.Name, structs.AccessWrite}, need{structs.KindExec, "", structs.AccessAllow})
	case structs.StepTune:
		needs = append(needs, need{structs.KindJob, s.Tuning.Job.Name, structs.AccessWrite})
		if s.Tuning.RegisterBestAs != "" {
			needs = append(needs, need{structs.KindModel, s.Tuning.RegisterBestAs, structs.AccessWrite})
		}
	case structs.StepIngest:
		needs = append(needs, need{structs.KindSource, s.Source, structs.AccessWrite})
	case structs.StepFeatures:
		needs = append(needs, need{structs.KindFeature, s.Features.Service, structs.AccessRead}, need{structs.KindDataset, s.Features.Output, structs.AccessWrite})
	case structs.StepEvaluate:
		name, _, _ := strings.Cut(s.Evaluate.Dataset, ":")
		needs = append(needs, need{structs.KindModel, s.Evaluate.Model, structs.AccessRead}, need{structs.KindDataset, name, structs.AccessRead})
	case structs.StepDeploy:
		needs = append(needs, need{structs.KindDeployment, s.Deploy.Model, structs.AccessWrite})
	case structs.StepWaitFor:
		if s.WaitFor.Dataset != "" {
			name, _, _ := strings.Cut(s.WaitFor.Dataset, ":")
			needs = append(needs, need{structs.KindDataset, name, structs.AccessRead})
		}
	}
	for _, n := range needs {
		if !id.Allowed(n.kind, n.name, n.access) {
			return structs.Errorf(structs.CodePermissionDenied, "the token that applied pipeline %s (%s) lacks %q on %s %q", run.Pipeline, run.AppliedBy, n.access, n.kind, n.name)
		}
	}
	return nil
}
