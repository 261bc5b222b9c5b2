package training

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/actors/internal/proc"
	"github.com/kilnml/kiln/ml/train"
	"github.com/kilnml/kiln/ml/train/algorithms"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Host is what a job member needs of its node.
type Host interface {
	// DatasetVersion reads a dataset version (name:version) from the local
	// registry.
	DatasetVersion(ref string) (*structs.DatasetVersion, error)
	// FetchBlob makes a blob local and returns its path.
	FetchBlob(ctx context.Context, digest string, holders []string) (string, error)
	// RegisterModel records the file at path as the next version of model
	// name, creating the model if it does not exist, and returns the
	// version.
	RegisterModel(ctx context.Context, name, format, path string, lineage structs.Lineage, metadata map[string]string) (uint64, error)
	// Report writes a member's state through Raft.
	Report(ctx context.Context, u *structs.JobUpdateRequest) error
	// Job reads a job from the local registry (a member waits there for
	// rank 0's address).
	Job(id string) (*structs.Job, error)
	// AdvertiseIP is the address other nodes reach this one at.
	AdvertiseIP() string
	// TrackingURI is this node's HTTP API, for MLFLOW_TRACKING_URI.
	TrackingURI() string
	// LogMetrics records step metric points of a run.
	LogMetrics(ctx context.Context, run string, points []structs.MetricPoint) error
}

// errStopped is the cause of a member's context when the registry no longer
// wants it to run (cancelled, or its attempt moved on); a member stopped so
// reports it, while one stopped by its node shutting down does not (the
// leader marks the job lost).
var errStopped = errors.New("stopped")

// logTailLines is how many of a failed member's last log lines are recorded.
const logTailLines = structs.MaxJobLogTail

// maxJobLogBytes caps a member's log file (proc.Log keeps one rotation).
const maxJobLogBytes = 64 << 20

// Member runs one member of one attempt of a job on this node.
type Member struct {
	Job    *structs.Job
	Rank   int
	NodeID string
	// Exec is the node's exec config, checked again before a process runs.
	Exec proc.Policy
	// Dir is the attempt's directory: the log, the metrics, the output.
	Dir    string
	Host   Host
	Logger hclog.Logger

	addr string // rank 0 of a gang: where the others meet it
}

// attemptDir is where a member of an attempt keeps its files, under the
// node's training work directory.
func attemptDir(workDir, job string, attempt, rank int) string {
	return filepath.Join(workDir, job, fmt.Sprintf("%d-%d", attempt, rank))
}

// LogPath is the member's log file.
func LogPath(workDir, job string, attempt, rank int) string {
	return filepath.Join(attemptDir(workDir, job, attempt, rank), "log")
}

// Run runs the member to its end and reports it: running once it starts,
// then succeeded or failed. A member whose context ends for another cause
// than errStopped (the node shutting down) reports nothing.
func (m *Member) Run(ctx context.Context) {
	j := m.Job
	if err := os.MkdirAll(m.Dir, 0o750); err != nil {
		m.report(ctx, structs.JobFailed, nil, "cannot create its directory: "+err.Error(), nil)
		return
	}
	log, err := proc.OpenLog(filepath.Join(m.Dir, "log"), maxJobLogBytes)
	if err != nil {
		m.report(ctx, structs.JobFailed, nil, "cannot open its log: "+err.Error(), nil)
		return
	}
	defer log.Close()
	if d := j.Spec.TimeoutDuration(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("timed out after %s", d))
		defer cancel()
	}
	running := m.update(structs.JobRunning)
	if m.Rank == 0 && j.Spec.Nodes > 1 {
		// The gang meets at rank 0: its address goes out with its start.
		port, err := freePort()
		if err != nil {
			m.report(ctx, structs.JobFailed, nil, "no free port for the other members: "+err.Error(), nil)
			return
		}
		running.Addr = net.JoinHostPort(m.Host.AdvertiseIP(), strconv.Itoa(port))
		m.addr = running.Addr
	}
	// The start is reported while the work begins, not before it: a commit
	// round is not on the way to the process starting. The end is reported
	// only after it, so the job is running before it is done.
	started := make(chan struct{})
	go func() {
		defer close(started)
		if err := m.Host.Report(ctx, running); err != nil {
			log.Note("could not report the start: %v", err)
		}
	}()
	res := m.work(ctx, log)
	<-started
	m.finish(ctx, log, res)
}

// work runs the member's trainer.
func (m *Member) work(ctx context.Context, log *proc.Log) *outcome {
	var res *outcome
	switch m.Job.Spec.Trainer.Kind {
	case structs.TrainerBuiltin:
		res = m.runBuiltin(ctx, log)
	case structs.TrainerProcess:
		res = m.runProcess(ctx, log)
	default:
		res = &outcome{err: fmt.Errorf("trainer kind %q cannot run on this node", m.Job.Spec.Trainer.Kind)}
	}
	return res
}

// finish reports how the member's work ended.
func (m *Member) finish(ctx context.Context, log *proc.Log, res *outcome) {
	j := m.Job
	if res.err != nil {
		cause := context.Cause(ctx)
		switch {
		case ctx.Err() != nil && !errors.Is(cause, errStopped) && !isTimeout(cause):
			return // the node is going away; the leader will see the job lost
		case ctx.Err() != nil:
			res.err = fmt.Errorf("%v", cause)
		}
		log.Note("failed: %v", res.err)
		m.report(context.WithoutCancel(ctx), structs.JobFailed, res.exitCode, res.err.Error(), log.Tail(logTailLines))
		return
	}
	log.Note("succeeded")
	u := m.update(structs.JobSucceeded)
	u.Metrics, u.ModelVersion = finite(res.metrics), res.modelVersion
	if err := m.Host.Report(context.WithoutCancel(ctx), u); err != nil {
		m.Logger.Warn("reporting a job's success failed", "job", j.ID, "error", err)
	}
}

func isTimeout(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, errStopped)
}

func (m *Member) update(state string) *structs.JobUpdateRequest {
	return &structs.JobUpdateRequest{JobID: m.Job.ID, Attempt: m.Job.Attempt, Rank: m.Rank, NodeID: m.NodeID, State: state, At: time.Now().UTC()}
}

func (m *Member) report(ctx context.Context, state string, exit *int, reason string, tail []string) {
	u := m.update(state)
	u.ExitCode, u.Reason, u.LogTail = exit, reason, tail
	if err := m.Host.Report(ctx, u); err != nil {
		m.Logger.Warn("reporting a job member failed", "job", m.Job.ID, "state", state, "error", err)
	}
}

// outcome is how a member's work ended.
type outcome struct {
	err          error
	exitCode     *int
	metrics      map[string]float64
	modelVersion uint64
}

// runBuiltin trains with one of ml/train's algorithms on its own goroutine;
// a panic in the trainer fails the job, not the node.
func (m *Member) runBuiltin(ctx context.Context, log *proc.Log) (res *outcome) {
	defer func() {
		if r := recover(); r != nil {
			log.Note("panic: %v\n%s", r, debug.Stack())
			res = &outcome{err: fmt.Errorf("the trainer panicked: %v", r)}
		}
	}()
	spec := &m.Job.Spec
	alg, ok := algorithms.Lookup(spec.Trainer.Algorithm)
	if !ok {
		return &outcome{err: fmt.Errorf("algorithm %q is unknown", spec.Trainer.Algorithm)}
	}
	params := train.Params(maps.Clone(spec.Params))
	task, err := alg.Task(params)
	if err != nil {
		return &outcome{err: err}
	}
	in := &train.Input{Task: task, Params: params, Threads: threadsFor(spec.Resources.CPU), Seed: seedOf(m.Job.ID)}
	fwd := newMetricForwarder(m.Host, m.Job.RunID)
	defer fwd.close()
	in.Report = func(p train.Point) {
		fwd.add(p)
		log.Note("step %d %s=%.6g", p.Step, p.Name, p.Value)
	}

	v, err := m.Host.DatasetVersion(spec.Dataset)
	if err != nil {
		return &outcome{err: err}
	}
	log.Note("fetching dataset %s (%d rows, %d bytes)", v.Ref(), v.Rows, v.Size)
	path, err := m.Host.FetchBlob(ctx, v.Digest, v.Holders)
	if err != nil {
		return &outcome{err: fmt.Errorf("fetching dataset %s: %w", v.Ref(), err)}
	}
	frame, classes, err := LoadFrame(ctx, FrameSpec{Version: v, Path: path, Target: spec.Target, Features: spec.Features, Task: task})
	if err != nil {
		return &outcome{err: err}
	}
	in.Train, in.Classes = frame, classes
	log.Note("training %s (%s) on %d rows of %d features with %d threads", alg.Name, task, frame.Rows, frame.Cols, in.Threads)

	val := spec.Validation
	var cvMetrics map[string]float64
	switch {
	case val.Split > 0:
		stratify := task != train.Regression
		tr, va := train.Split(frame, val.Split, in.Seed, stratify)
		if len(tr) == 0 || len(va) == 0 {
			return &outcome{err: fmt.Errorf("validation.split %g of %d rows leaves no training or no validation row", val.Split, frame.Rows)}
		}
		in.Train, in.Valid = frame.Subset(tr), frame.Subset(va)
	case val.KFold > 0:
		cvMetrics, err = train.CrossValidate(ctx, alg.Train, in, val.KFold)
		if err != nil {
			return &outcome{err: err}
		}
		log.Note("%d-fold cross-validation: %s", val.KFold, formatMetrics(cvMetrics))
	case val.Dataset != "":
		vv, err := m.Host.DatasetVersion(val.Dataset)
		if err != nil {
			return &outcome{err: err}
		}
		vpath, err := m.Host.FetchBlob(ctx, vv.Digest, vv.Holders)
		if err != nil {
			return &outcome{err: fmt.Errorf("fetching dataset %s: %w", vv.Ref(), err)}
		}
		in.Valid, _, err = LoadFrame(ctx, FrameSpec{Version: vv, Path: vpath, Target: spec.Target, Features: frame.FeatureNames, Task: task, Classes: classes})
		if err != nil {
			return &outcome{err: fmt.Errorf("validation dataset: %w", err)}
		}
	}
	out, err := alg.Train(ctx, in)
	if err != nil {
		return &outcome{err: err}
	}
	final := out.Metrics
	if cvMetrics != nil {
		final = cvMetrics // the folds' mean: the model is fitted on every row
	}
	log.Note("final metrics: %s", formatMetrics(final))
	modelPath := filepath.Join(m.Dir, "output", "model")
	if err := os.MkdirAll(filepath.Dir(modelPath), 0o750); err != nil {
		return &outcome{err: err}
	}
	if err := os.WriteFile(modelPath, out.Model, 0o640); err != nil {
		return &outcome{err: err}
	}
	res = &outcome{metrics: final}
	if spec.RegisterAs != "" {
		res.modelVersion, err = m.Host.RegisterModel(ctx, spec.RegisterAs, out.Format, modelPath, m.lineage(), m.metadata(final))
		if err != nil {
			return &outcome{err: fmt.Errorf("registering the model as %q: %w", spec.RegisterAs, err)}
		}
		log.Note("registered as version %d of model %s", res.modelVersion, spec.RegisterAs)
	}
	return res
}

func (m *Member) lineage() structs.Lineage {
	return structs.Lineage{JobID: m.Job.ID, RunID: m.Job.RunID, Dataset: m.Job.Spec.Dataset}
}

// metadata is what a registered version records of its job: the params
// (param.<name>) and the final metrics (metric.<name>).
func (m *Member) metadata(metrics map[string]float64) map[string]string {
	md := map[string]string{"job": m.Job.ID, "job_name": m.Job.Spec.Name}
	if a := m.Job.Spec.Trainer.Algorithm; a != "" {
		md["algorithm"] = a
	}
	for k, v := range m.Job.Spec.Params {
		if len(md) < structs.MaxMetadata-len(metrics) {
			md["param."+k] = structs.TruncateUTF8(fmt.Sprint(v), structs.MaxTagValueLen)
		}
	}
	for k, v := range metrics {
		if len(md) < structs.MaxMetadata {
			md["metric."+k] = strconv.FormatFloat(v, 'g', -1, 64)
		}
	}
	return md
}

// threadsFor is the goroutines a trainer may use: the CPUs the job asked for
// (rounded up), or every core when it asked none.
func threadsFor(cpu float64) int {
	if cpu <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return max(1, int(math.Ceil(cpu)))
}

// seedOf derives a job's sampling seed from its ID, so that a retry samples
// as the first attempt did.
func seedOf(id string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(id); i++ {
		h = (h ^ uint64(id[i])) * 1099511628211
	}
	return h
}

func formatMetrics(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=%.6g", k, m[k])
	}
	return s
}

// finite leaves out the metrics that are NaN or infinite: a job's record
// is read as JSON, which has no such numbers (the run keeps every point).
func finite(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[k] = v
		}
	}
	return out
}
