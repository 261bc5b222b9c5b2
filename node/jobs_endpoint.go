package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/actors/training"
	"github.com/kilnml/kiln/ml/train"
	"github.com/kilnml/kiln/ml/train/algorithms"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Jobs (DESIGN.md §7): submit, read, cancel, and logs through any node.

const (
	rpcJobLogs = "job.logs"
	// maxLogChunk is the most log bytes one job.logs call returns.
	maxLogChunk = 256 << 10
	// logPollInterval is how often a followed log is read again.
	logPollInterval = 500 * time.Millisecond
)

// handleJobSubmit validates a job spec as far as the registry allows and
// proposes it; Apply checks the dataset and the capacity again.
func (a *Agent) handleJobSubmit(w http.ResponseWriter, r *http.Request) {
	var spec structs.JobSpec
	if err := a.decodeBody(w, r, &spec); err != nil {
		writeError(w, err)
		return
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorizeJobSubmit(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	if err := a.buildJobFrame(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	a.submitJob(w, r, spec, "")
}

// handleJobRetry submits a finished job's spec again as a new job, which
// names the old one in retry_of. The spec's dataset was pinned to a version
// at the first submit (and a feature frame built into one), so the retry
// trains on the same data.
func (a *Agent) handleJobRetry(w http.ResponseWriter, r *http.Request) {
	old, err := a.readJob(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	spec := old.Spec
	if err := a.authorizeJobSubmit(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	a.submitJob(w, r, spec, old.ID) // Apply refuses it unless old has finished
}

// authorizeJobSubmit checks the rights a submit needs: write on the job's
// name, and exec for a process trainer.
func (a *Agent) authorizeJobSubmit(r *http.Request, spec *structs.JobSpec) error {
	if err := a.authorize(r, structs.KindJob, spec.Name, structs.AccessWrite); err != nil {
		return err
	}
	if spec.Trainer.Kind == structs.TrainerProcess {
		return a.authorize(r, structs.KindExec, "", structs.AccessAllow)
	}
	return nil
}

// submitJob checks a builtin job's data and commits the job.
func (a *Agent) submitJob(w http.ResponseWriter, r *http.Request, spec structs.JobSpec, retryOf string) {
	if err := a.checkJobData(r.Context(), &spec); err != nil {
		writeError(w, err)
		return
	}
	now := time.Now().UTC()
	var j structs.Job
	idx, err := a.propose(r.Context(), structs.JobSubmitType, &structs.JobSubmitRequest{ID: structs.NewID(now), Spec: spec, SubmittedAt: now, RetryOf: retryOf}, &j)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusCreated, idx, jobJSON(&j, now))
}

// buildJobFrame builds the point-in-time frame a job asks for instead of a
// dataset, and names it as the job's dataset; the frame's features become
// the job's features unless the spec lists them. The frame's version
// records its lineage (the views' states), and the model's lineage names
// the version.
func (a *Agent) buildJobFrame(r *http.Request, spec *structs.JobSpec) error {
	f := spec.FeatureFrame
	if f == nil {
		return nil
	}
	if spec.Dataset != "" {
		return structs.Errorf(structs.CodeInvalid, "give dataset or feature_frame, not both")
	}
	entityName, _, _ := strings.Cut(f.EntityRows, ":")
	for _, c := range []struct {
		kind   structs.ACLKind
		name   string
		access structs.ACLAccess
	}{{structs.KindFeature, f.Service, structs.AccessRead}, {structs.KindDataset, entityName, structs.AccessRead}, {structs.KindDataset, f.Output, structs.AccessWrite}} {
		if err := a.authorize(r, c.kind, c.name, c.access); err != nil {
			return err
		}
	}
	v, err := a.buildFeatureFrame(r.Context(), frameSpec{Service: f.Service, EntityRows: f.EntityRows, TimestampColumn: f.TimestampColumn, Output: f.Output})
	if err != nil {
		return structs.Errorf(structs.ErrorCode(err), "feature_frame: %v", err)
	}
	spec.Dataset = v.Ref()
	if len(spec.Features) == 0 {
		spec.Features = v.Features.Features
	}
	return nil
}

// checkJobData checks what a builtin job asks of its algorithm and data:
// the algorithm and its parameters, the target's type against the task,
// numeric features. Process jobs read their data themselves.
func (a *Agent) checkJobData(ctx context.Context, spec *structs.JobSpec) error {
	if spec.Trainer.Kind != structs.TrainerBuiltin {
		return nil
	}
	alg, ok := algorithms.Lookup(spec.Trainer.Algorithm)
	if !ok {
		return structs.Errorf(structs.CodeInvalid, "trainer.algorithm %q is unknown: use one of %s", spec.Trainer.Algorithm, strings.Join(algorithms.Names(), ", "))
	}
	task, err := alg.Task(train.Params(spec.Params))
	if err != nil {
		return structs.Errorf(structs.CodeInvalid, "params: %s", strings.TrimPrefix(err.Error(), train.ErrParam.Error()+": "))
	}
	name, n, err := structs.ParseDatasetRef("dataset", spec.Dataset)
	if err != nil {
		return err
	}
	v, err := a.readDatasetVersion(ctx, name, n)
	if err != nil {
		return structs.Errorf(structs.CodeInvalid, "dataset: %v", err)
	}
	if err := training.CheckTarget(v, spec.Target, task); err != nil {
		return structs.Errorf(structs.CodeInvalid, "target: %v", err)
	}
	if _, err := training.FeatureColumns(v, spec.Target, spec.Features); err != nil {
		return structs.Errorf(structs.CodeInvalid, "features: %v", err)
	}
	return nil
}

// readDatasetVersion reads a version locally, and at the leader's index when
// this node has not seen it yet (one pushed a moment ago elsewhere).
func (a *Agent) readDatasetVersion(ctx context.Context, name string, n uint64) (*structs.DatasetVersion, error) {
	txn := a.fsm.ReadTxn()
	v, err := txn.DatasetVersion(name, n)
	txn.Discard()
	if structs.ErrorCode(err) != structs.CodeNotFound {
		return v, err
	}
	txn, cerr := a.consistentTxn(ctx)
	if cerr != nil {
		return nil, err
	}
	defer txn.Discard()
	return txn.DatasetVersion(name, n)
}

// jobView is a job as the API shows it.
type jobView struct {
	*structs.Job
	DurationSeconds float64 `json:"duration_seconds"`
}

func jobJSON(j *structs.Job, now time.Time) jobView {
	if j.Allocations == nil {
		j.Allocations = []structs.JobAllocation{}
	}
	for i := range j.Allocations {
		if j.Allocations[i].GPUs == nil {
			j.Allocations[i].GPUs = []int{}
		}
	}
	v := jobView{Job: j}
	switch {
	case j.StartedAt.IsZero():
	case j.FinishedAt.IsZero():
		v.DurationSeconds = now.Sub(j.StartedAt).Seconds()
	default:
		v.DurationSeconds = j.FinishedAt.Sub(j.StartedAt).Seconds()
	}
	return v
}

// readJob reads the job {id} names and checks that the token may read it.
func (a *Agent) readJob(w http.ResponseWriter, r *http.Request) (*structs.Job, error) {
	id := r.PathValue("id")
	if err := structs.ValidateID("id", id); err != nil {
		return nil, err
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		return nil, err
	}
	defer txn.Discard()
	j, err := txn.Job(id)
	if err != nil {
		return nil, err
	}
	return j, a.authorize(r, structs.KindJob, j.Spec.Name, structs.AccessRead)
}

func (a *Agent) handleJobGet(w http.ResponseWriter, r *http.Request) {
	j, err := a.readJob(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, jobJSON(j, time.Now()))
}

func (a *Agent) handleJobList(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	serveList(a, w, r, structs.KindJob,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.Job, string, error) { return txn.Jobs },
		func(j *structs.Job) string { return j.Spec.Name }, func(j *structs.Job) jobView { return jobJSON(j, now) })
}

func (a *Agent) handleJobCancel(w http.ResponseWriter, r *http.Request) {
	j, err := a.readJob(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorize(r, structs.KindJob, j.Spec.Name, structs.AccessWrite); err != nil {
		writeError(w, err)
		return
	}
	var out structs.Job
	idx, err := a.propose(r.Context(), structs.JobCancelType, &structs.JobCancelRequest{JobID: j.ID, At: time.Now().UTC()}, &out)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, jobJSON(&out, time.Now()))
}

// jobLogArgs asks a member's node for a piece of its log.
type jobLogArgs struct {
	JobID   string `msgpack:"job_id"`
	Attempt int    `msgpack:"attempt"`
	Rank    int    `msgpack:"rank"`
	Offset  int64  `msgpack:"offset"`
}

type jobLogReply struct {
	Data []byte `msgpack:"data"`
	// Size is the log's size when it was read.
	Size int64 `msgpack:"size"`
}

// readJobLog reads up to maxLogChunk bytes of a local member's log from
// offset. A log that does not exist (yet) reads as empty.
func (a *Agent) readJobLog(args *jobLogArgs) (*jobLogReply, error) {
	if structs.ValidateID("job_id", args.JobID) != nil || args.Attempt < 1 || args.Rank < 0 || args.Offset < 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "bad job log request")
	}
	f, err := os.Open(training.LogPath(a.jobsDir(), args.JobID, args.Attempt, args.Rank))
	if errors.Is(err, os.ErrNotExist) {
		return &jobLogReply{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	rep := &jobLogReply{Size: fi.Size()}
	if args.Offset >= fi.Size() {
		return rep, nil
	}
	buf := make([]byte, min(maxLogChunk, fi.Size()-args.Offset))
	n, err := f.ReadAt(buf, args.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	rep.Data = buf[:n]
	return rep, nil
}

func (a *Agent) handleJobLogsRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args jobLogArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad job.logs request: %v", err)
	}
	return a.readJobLog(&args)
}

// handleJobLogs streams a member's log (?rank=, 0 by default; ?attempt=,
// the current one by default) from the node that runs it, through any
// node. With ?follow=true it keeps streaming until the attempt ends.
func (a *Agent) handleJobLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	follow := q.Get("follow") == "true"
	rank, err := queryInt(q.Get("rank"), "rank", 0)
	if err != nil {
		writeError(w, err)
		return
	}
	attempt, err := queryInt(q.Get("attempt"), "attempt", 0)
	if err != nil {
		writeError(w, err)
		return
	}
	j, err := a.readJob(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if attempt == 0 {
		attempt = j.Attempt
	}
	if attempt == 0 {
		writeError(w, structs.Errorf(structs.CodeNotFound, "job %s has not been placed yet: it has no log", j.ID))
		return
	}
	if follow {
		w, _ = longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var offset int64
	for {
		node := memberNode(j, attempt, rank)
		if node == "" {
			return
		}
		rep, err := a.jobLogChunk(r.Context(), node, &jobLogArgs{JobID: j.ID, Attempt: attempt, Rank: rank, Offset: offset})
		if err != nil {
			_, _ = io.WriteString(w, "\nkiln: reading the log failed: "+err.Error()+"\n")
			return
		}
		if len(rep.Data) > 0 {
			if _, err := w.Write(rep.Data); err != nil {
				return
			}
			offset += int64(len(rep.Data))
			_ = rc.Flush()
			if offset < rep.Size {
				continue
			}
		}
		if !follow {
			return
		}
		txn := a.fsm.ReadTxn()
		cur, err := txn.Job(j.ID)
		txn.Discard()
		if err != nil || cur.Attempt != attempt || cur.Terminal() {
			if err == nil && offset >= rep.Size {
				// One last read: the member may have written its end
				// after the read above.
				if last, err := a.jobLogChunk(r.Context(), node, &jobLogArgs{JobID: j.ID, Attempt: attempt, Rank: rank, Offset: offset}); err == nil {
					_, _ = w.Write(last.Data)
				}
			}
			return
		}
		j = cur
		select {
		case <-r.Context().Done():
			return
		case <-time.After(logPollInterval):
		}
	}
}

// memberNode is the node of member rank of the job's attempt, "" when the
// job has none (the log of an older attempt is on the node that ran it,
// which the job record no longer names).
func memberNode(j *structs.Job, attempt, rank int) string {
	if attempt != j.Attempt || rank >= len(j.Allocations) {
		return ""
	}
	return j.Allocations[rank].NodeID
}

func (a *Agent) jobLogChunk(ctx context.Context, node string, args *jobLogArgs) (*jobLogReply, error) {
	if node == a.id {
		return a.readJobLog(args)
	}
	addr, err := a.resolveNode(node)
	if err != nil {
		return nil, err
	}
	var rep jobLogReply
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.trans.Call(cctx, addr, rpcJobLogs, args, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

func queryInt(s, field string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, structs.Errorf(structs.CodeInvalid, "%s must be a non-negative integer, not %q", field, s)
	}
	return n, nil
}

// jobsEndpoint: jobs and their logs. A job's name is its ACL name; routes
// by ID check it once they have read the job (needBody).
func (a *Agent) jobsEndpoint() endpoint {
	k := structs.KindJob
	return endpoint{
		routes: []route{
			{pattern: "POST /v1/jobs", handler: a.handleJobSubmit, kind: k, need: needBody},
			{pattern: "GET /v1/jobs", handler: a.handleJobList, kind: k, need: needList},
			{pattern: "GET /v1/jobs/{id}", handler: a.handleJobGet, kind: k, need: needBody},
			{pattern: "POST /v1/jobs/{id}/cancel", handler: a.handleJobCancel, kind: k, need: needBody},
			{pattern: "POST /v1/jobs/{id}/retry", handler: a.handleJobRetry, kind: k, need: needBody},
			{pattern: "GET /v1/jobs/{id}/logs", handler: a.handleJobLogs, kind: k, need: needBody},
		},
		rpcs: map[string]transport.Handler{rpcJobLogs: a.handleJobLogsRPC},
	}
}
