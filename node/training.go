package node

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnml/kiln/actors/training"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// setupTraining builds this node's job reconciler (DESIGN.md §7); New
// starts it with the serving one.
func (a *Agent) setupTraining() {
	a.runLog = newRunLogger(func(ctx context.Context, req *structs.RunLogRequest) error {
		return a.proposeCmd(ctx, structs.RunLogType, req)
	})
	a.jobs = training.NewReconciler(training.ReconcilerConfig{
		NodeID: a.id,
		System: a.actors,
		View: func() (training.Registry, func()) {
			txn := a.fsm.ReadTxn()
			return txn, txn.Discard
		},
		Changed: a.fsm.Changed,
		Index:   a.fsm.IndexFunc(raftfsm.TableJobs),
		Host:    trainingHost{a},
		Exec:    a.cfg.Exec.servingPolicy(),
		WorkDir: a.jobsDir(),
		Logger:  a.logger,
	})
}

// jobsDir holds the job members' directories: logs, metrics, outputs.
func (a *Agent) jobsDir() string { return filepath.Join(a.cfg.DataDir, "jobs") }

// trainingHost is what job members need of the node.
type trainingHost struct{ a *Agent }

func (h trainingHost) DatasetVersion(ref string) (*structs.DatasetVersion, error) {
	name, v, err := structs.ParseDatasetRef("dataset", ref)
	if err != nil {
		return nil, err
	}
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.DatasetVersion(name, v)
}

func (h trainingHost) FetchBlob(ctx context.Context, digest string, holders []string) (string, error) {
	return h.a.xfer.Ensure(ctx, digest, holders)
}

func (h trainingHost) Job(id string) (*structs.Job, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	return txn.Job(id)
}

func (h trainingHost) AdvertiseIP() string { return h.a.cfg.advertiseIP() }

func (h trainingHost) TrackingURI() string { return "http://" + h.a.advertiseHTTP() }

func (h trainingHost) LogMetrics(ctx context.Context, run string, points []structs.MetricPoint) error {
	return h.a.runLog.Log(ctx, &structs.RunLogRequest{RunID: run, Metrics: points})
}

func (h trainingHost) Report(ctx context.Context, u *structs.JobUpdateRequest) error {
	return h.a.proposeCmd(ctx, structs.JobUpdateType, u)
}

// RegisterModel records a trained model as a new version, as an upload
// does (the file must load; it is stored and copied before the version is
// proposed), creating the model on first use.
func (h trainingHost) RegisterModel(ctx context.Context, name, format, path string, lineage structs.Lineage, metadata map[string]string) (uint64, error) {
	a := h.a
	now := time.Now().UTC()
	_, err := a.propose(ctx, structs.ModelCreateType, &structs.ModelCreateRequest{Model: structs.Model{
		Name: name, Description: "trained by job " + lineage.JobID, CreatedAt: now, UpdatedAt: now,
	}}, nil)
	if err != nil && structs.ErrorCode(err) != structs.CodeConflict {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	tmp, digest, size, err := a.blobs.Ingest(f, a.cfg.MaxArtifactBytes)
	f.Close()
	if err != nil {
		return 0, err
	}
	v := structs.ModelVersion{Model: name, Format: format, Lineage: lineage, Metadata: metadata}
	stored, _, err := a.recordVersion(ctx, &v, tmp, digest, size, nil, nil)
	if err != nil {
		return 0, err
	}
	return stored.Version, nil
}
