package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Host is what a run actor needs of its node.
type Host interface {
	// Run reads a run from this node's registry.
	Run(pipeline, id string) (*structs.PipelineRun, error)
	// Step commits step transitions; already_exists means another actor
	// moved a step first.
	Step(ctx context.Context, req *structs.PipelineRunStepRequest) error
	// SubmitJob submits a job with the given ID; a job of that ID that
	// exists already is not an error (the step re-attaches to it).
	SubmitJob(ctx context.Context, id string, spec structs.JobSpec) error
	// Job reads a job; not_found when there is none.
	Job(id string) (*structs.Job, error)
	// CancelJob stops a job.
	CancelJob(ctx context.Context, id string) error
	// TriggerSource asks for a run of a source and returns its trigger.
	TriggerSource(ctx context.Context, name string) (uint64, error)
	// Source reads a source.
	Source(name string) (*structs.Source, error)
	// Frame builds a point-in-time frame into a dataset version and
	// returns its reference.
	Frame(ctx context.Context, f structs.FeatureFrame) (string, error)
	// Evaluate scores a model version on a dataset version, and the
	// model's champion on the same rows.
	Evaluate(ctx context.Context, e structs.EvaluateStep) (metrics, champion map[string]float64, err error)
	// Deployment reads a model's deployment.
	Deployment(model string) (*structs.Deployment, error)
	// SetTraffic sets a deployment's weighted versions.
	SetTraffic(ctx context.Context, model string, versions []structs.TrafficSplit) error
	// VersionStats is a version's requests, errors and p99 latency.
	VersionStats(ctx context.Context, model string, version uint64) (requests, errors uint64, p99ms float64)
	// SubmitTuning submits a tuning with the given ID; one of that ID
	// that exists already is not an error.
	SubmitTuning(ctx context.Context, id string, spec structs.TuningSpec) error
	// Tuning reads a tuning; not_found when there is none.
	Tuning(id string) (*structs.Tuning, error)
	// LatestDataset reads a dataset's latest version.
	LatestDataset(name string) (*structs.DatasetVersion, error)
	// Alert reads an alert rule's alert.
	Alert(rule string) (*structs.Alert, error)
	// InputDigests lists the digests of the dataset and model versions a
	// resolved step reads (a dataset named without a version: its latest).
	InputDigests(s *structs.StepSpec) ([]string, error)
	// CacheGet reads a step's cached outputs for a digest of its inputs.
	CacheGet(pipeline, step, key string) (map[string]string, bool)
	// CachePut records them.
	CachePut(ctx context.Context, e *structs.StepCacheEntry) error
	// Authorize checks that the token that applied the run's pipeline may
	// do what a resolved step does, as it stands now (its policies may
	// have changed, it may be gone).
	Authorize(run *structs.PipelineRun, s *structs.StepSpec) error
	// Changed fires when the registry changes.
	Changed() <-chan struct{}
}

// RunActor drives one run: it reads the run, sees how its running steps'
// work stands (a job, a source run), decides with PlanRun, commits the
// transitions, and starts the work of the steps it started. Everything it
// knows is in the registry, so a new actor (after a failover) picks the
// run up where it was: a running step's job has an ID derived from the
// run, the step and the attempt, committed before the job is submitted, so
// the new actor re-attaches to it instead of starting it again.
type RunActor struct {
	Pipeline, ID string
	Host         Host
	Log          hclog.Logger
	// Slots is a cluster-wide bound on the steps it may start (< 0: none).
	Slots func() int
	// Poll bounds the wait between two looks at the run when nothing in
	// the registry changes (a job's end always changes it).
	Poll time.Duration

	mu    sync.Mutex
	works map[string]*work // guarded by mu: computations under way, by step/attempt
	wake  chan struct{}    // a computation ended
}

// result is what a step's work computed on the actor's side.
type result struct {
	value any
	err   error
}

// work is a computation of a step's attempt running beside the actor's
// loop (a frame, an evaluation), so that a long one holds up no other step.
// Its result is kept in memory only: an actor that takes the run over
// computes it again (it is pure).
type work struct {
	done bool
	res  result
}

// background runs compute for a step's attempt on a goroutine of its own
// (once) and reports its result once ready. The actor's loop is woken when
// it is.
func (a *RunActor) background(ctx context.Context, step string, attempt int, compute func(context.Context) (any, error)) (result, bool) {
	key := step + "/" + strconv.Itoa(attempt)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.works == nil {
		a.works = map[string]*work{}
	}
	if a.wake == nil {
		a.wake = make(chan struct{}, 1)
	}
	w, ok := a.works[key]
	if !ok {
		w = &work{}
		a.works[key] = w
		go func() {
			v, err := compute(ctx)
			a.mu.Lock()
			w.done, w.res = true, result{value: v, err: err}
			a.mu.Unlock()
			select {
			case a.wake <- struct{}{}:
			default:
			}
		}()
		return result{}, false
	}
	if !w.done {
		return result{}, false
	}
	delete(a.works, key)
	return w.res, true
}

// Run drives the run until it ends or ctx does.
func (a *RunActor) Run(ctx context.Context) {
	if a.Poll <= 0 {
		a.Poll = time.Second
	}
	a.mu.Lock()
	if a.wake == nil {
		a.wake = make(chan struct{}, 1)
	}
	wake := a.wake
	a.mu.Unlock()
	for ctx.Err() == nil {
		changed := a.Host.Changed()
		done, err := a.step(ctx)
		if err != nil && ctx.Err() == nil && structs.ErrorCode(err) != structs.CodeConflict {
			a.Log.Warn("pipeline run step failed", "pipeline", a.Pipeline, "run", a.ID, "error", err)
		}
		if done {
			return
		}
		if err != nil && structs.ErrorCode(err) == structs.CodeConflict {
			continue // another actor moved a step: read again at once
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-wake:
		case <-time.After(a.Poll):
		}
	}
}

// step makes one pass; done is true once the run has ended. A panic in a
// step's work is an error of the pass, logged, not the end of the process.
func (a *RunActor) step(ctx context.Context) (done bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			done, err = false, fmt.Errorf("pipeline: panic: %v", r)
		}
	}()
	run, err := a.Host.Run(a.Pipeline, a.ID)
	if err != nil {
		return structs.ErrorCode(err) == structs.CodeNotFound, err
	}
	if run.Terminal() {
		return true, nil
	}
	now := time.Now().UTC()
	updates := map[string]*structs.StepUpdate{}
	statuses := make(map[string]*structs.StepStatus, len(run.Steps))
	for i := range run.Steps {
		s := run.Steps[i]
		statuses[s.Name] = &s
	}
	// How the running steps' work stands.
	for i := range run.Spec.Steps {
		spec := &run.Spec.Steps[i]
		s := statuses[spec.Name]
		if s.State != structs.StepRunning || run.CancelRequested {
			continue
		}
		next, err := a.observe(ctx, run, spec, s, now)
		if err != nil {
			return false, err
		}
		if next != nil {
			updates[spec.Name] = &structs.StepUpdate{From: s.State, Status: *next}
			statuses[spec.Name] = next
		}
	}
	slots := -1
	if a.Slots != nil && !run.CancelRequested {
		slots = a.Slots()
	}
	plan := PlanRun(Input{Spec: &run.Spec, Steps: statuses, Cancel: run.CancelRequested, Slots: slots, Now: now})
	set := func(name, state string, change func(*structs.StepStatus)) {
		cur := *statuses[name]
		from := cur.State
		if u, ok := updates[name]; ok {
			from = u.From
		}
		cur.State = state
		if change != nil {
			change(&cur)
		}
		updates[name] = &structs.StepUpdate{From: from, Status: cur}
		statuses[name] = &cur
	}
	for _, name := range plan.Skip {
		set(name, structs.StepSkipped, func(s *structs.StepStatus) { s.FinishedAt = now; s.Error = "a dependency did not succeed" })
	}
	for _, name := range append(slicesClone(plan.Stop), plan.CancelWaiting...) {
		set(name, structs.StepCancelled, func(s *structs.StepStatus) { s.FinishedAt = now })
	}
	var started []string
	for _, name := range append(slicesClone(plan.Start), plan.Retry...) {
		spec := stepSpec(&run.Spec, name)
		resolved, err := resolveStep(run, spec, statuses)
		if err != nil {
			set(name, structs.StepFailed, func(s *structs.StepStatus) {
				s.NoRetry = true // a reference that does not resolve will not on a retry
				s.Error, s.FinishedAt = err.Error(), now
			})
			continue
		}
		if err := a.Host.Authorize(run, resolved); err != nil {
			set(name, structs.StepFailed, func(s *structs.StepStatus) {
				s.NoRetry = true
				s.Error, s.FinishedAt = err.Error(), now
			})
			continue
		}
		key := ""
		if spec.Cache {
			if key, err = a.cacheKey(resolved); err != nil {
				a.Log.Warn("the step's inputs have no digest; it runs without the cache", "run", a.ID, "step", name, "error", err)
			} else if out, ok := a.Host.CacheGet(a.Pipeline, name, key); ok {
				set(name, structs.StepCached, func(s *structs.StepStatus) {
					s.Outputs, s.Cached = maps.Clone(out), true
					s.StartedAt, s.FinishedAt, s.Error = now, now, ""
				})
				continue
			}
		}
		set(name, structs.StepRunning, func(s *structs.StepStatus) {
			s.Attempts++
			s.StartedAt, s.FinishedAt, s.Error, s.Cached, s.NoRetry = now, time.Time{}, "", false, false
			s.Outputs = workOutputs(run, spec, s.Attempts)
			if key != "" {
				s.Outputs["cache_key"] = key
			}
		})
		started = append(started, name)
	}
	if len(updates) == 0 && plan.State == run.State {
		return false, nil
	}
	// The run's state after these moves (a skip can end it).
	after := PlanRun(Input{Spec: &run.Spec, Steps: statuses, Cancel: run.CancelRequested, Slots: 0}).State
	req := &structs.PipelineRunStepRequest{Pipeline: a.Pipeline, RunID: a.ID, State: after, At: now}
	for i := range run.Spec.Steps {
		if u, ok := updates[run.Spec.Steps[i].Name]; ok {
			req.Updates = append(req.Updates, *u)
		}
	}
	if err := a.Host.Step(ctx, req); err != nil {
		return false, err
	}
	// Committed: now the work. A step whose work fails to start is failed
	// by the next observation (its job is missing and cannot be
	// submitted, say), not here.
	for _, name := range plan.Stop {
		if id := statuses[name].Outputs["job_id"]; id != "" {
			if err := a.Host.CancelJob(ctx, id); err != nil && structs.ErrorCode(err) != structs.CodeNotFound {
				a.Log.Warn("cancelling a step's job failed", "run", a.ID, "step", name, "error", err)
			}
		}
	}
	for _, name := range started {
		a.Log.Info("pipeline step started", "pipeline", a.Pipeline, "run", a.ID, "step", name, "attempt", statuses[name].Attempts)
		// The work of a job-like step starts now rather than on the next
		// pass; should this fail or the actor die first, the next
		// observation submits it (same ID).
		spec := stepSpec(&run.Spec, name)
		st := statuses[name]
		resolved, err := resolveStep(run, spec, statuses)
		if err != nil {
			continue
		}
		switch spec.Type {
		case structs.StepTrain, structs.StepCommand:
			err = a.Host.SubmitJob(ctx, st.Outputs["job_id"], stepJob(run, resolved))
		case structs.StepTune:
			err = a.Host.SubmitTuning(ctx, st.Outputs["tuning_id"], *resolved.Tuning)
		}
		if err != nil {
			a.Log.Debug("starting a step's work failed; the next pass retries", "run", a.ID, "step", name, "error", err)
		}
	}
	return after == structs.PipelineSucceeded || after == structs.PipelineFailed || after == structs.PipelineCancelled, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// StepJobID is the ID of the job of a step's attempt: the run's time part,
// then a digest of the run, the step and the attempt. The same attempt
// always has the same job, so an actor that takes a run over finds it.
func StepJobID(runID, step string, attempt int) string {
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	sum := sha256.Sum256([]byte(runID + "/" + step + "/" + strconv.Itoa(attempt)))
	out := []byte(runID[:10])
	for i := 0; i < 16; i++ {
		out = append(out, alphabet[sum[i]&31])
	}
	return string(out)
}

// workOutputs are what a step records as it starts: the handle of its
// work, so that its next actor finds it.
func workOutputs(run *structs.PipelineRun, spec *structs.StepSpec, attempt int) map[string]string {
	switch spec.Type {
	case structs.StepTrain, structs.StepCommand:
		return map[string]string{"job_id": StepJobID(run.ID, spec.Name, attempt)}
	case structs.StepTune:
		return map[string]string{"tuning_id": StepJobID(run.ID, spec.Name, attempt)}
	case structs.StepIngest:
		return map[string]string{"trigger": ""} // set once the source is asked
	}
	return map[string]string{}
}

// observe looks at a running step's work and returns its next status, or
// nil when nothing changed.
func (a *RunActor) observe(ctx context.Context, run *structs.PipelineRun, spec *structs.StepSpec, s *structs.StepStatus, now time.Time) (*structs.StepStatus, error) {
	next := *s
	next.Outputs = maps.Clone(s.Outputs)
	if next.Outputs == nil {
		next.Outputs = map[string]string{}
	}
	fail := func(msg string) *structs.StepStatus {
		next.State, next.Error, next.FinishedAt, next.Waiting = structs.StepFailed, msg, now, ""
		return &next
	}
	succeed := func(outputs map[string]string) *structs.StepStatus {
		next.State, next.FinishedAt, next.Error, next.Waiting = structs.StepSucceeded, now, "", ""
		maps.Copy(next.Outputs, outputs)
		if key := next.Outputs["cache_key"]; spec.Cache && key != "" {
			// Before the success is committed: a later run finds the
			// outputs either way (putting them twice is harmless).
			e := &structs.StepCacheEntry{Pipeline: a.Pipeline, Step: spec.Name, Key: key, Outputs: maps.Clone(next.Outputs), RunID: run.ID, At: now}
			delete(e.Outputs, "cache_key")
			if err := a.Host.CachePut(ctx, e); err != nil {
				a.Log.Warn("caching a step's outputs failed", "run", a.ID, "step", spec.Name, "error", err)
			}
		}
		return &next
	}
	if spec.Timeout != "" {
		if d, _ := structs.ParseSpan(spec.Timeout); d > 0 && now.Sub(s.StartedAt) > d {
			if id := s.Outputs["job_id"]; id != "" {
				_ = a.Host.CancelJob(ctx, id)
			}
			return fail(fmt.Sprintf("timed out after %s", spec.Timeout)), nil
		}
	}
	statuses := map[string]*structs.StepStatus{}
	for i := range run.Steps {
		statuses[run.Steps[i].Name] = &run.Steps[i]
	}
	resolved, err := resolveStep(run, spec, statuses)
	if err != nil {
		return fail(err.Error()), nil
	}
	switch spec.Type {
	case structs.StepTrain, structs.StepCommand:
		id := s.Outputs["job_id"]
		j, err := a.Host.Job(id)
		if structs.ErrorCode(err) == structs.CodeNotFound {
			// Committed as running but never submitted (its actor died
			// between): submit it now, under the same ID.
			if err := a.Host.SubmitJob(ctx, id, stepJob(run, resolved)); err != nil {
				return fail("submitting its job: " + err.Error()), nil
			}
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		switch j.State {
		case structs.JobSucceeded:
			out := map[string]string{"job_id": j.ID, "run_id": j.RunID}
			if j.Spec.Dataset != "" {
				out["dataset"] = j.Spec.Dataset
			}
			if j.ModelVersion > 0 {
				out["model"], out["model_version"] = j.Spec.RegisterAs, strconv.FormatUint(j.ModelVersion, 10)
			}
			if spec.Type == structs.StepCommand {
				out["exit_code"] = "0" // a job succeeds when its process exits 0
			}
			for k, v := range j.Metrics {
				out["metrics."+k] = strconv.FormatFloat(v, 'g', -1, 64)
			}
			return succeed(out), nil
		case structs.JobFailed, structs.JobCancelled, structs.JobLost:
			return fail(fmt.Sprintf("job %s %s: %s", j.ID, j.State, j.Reason)), nil
		}
		if j.State == structs.JobPending && j.Reason != "" && s.Waiting != j.Reason {
			next.Waiting = j.Reason
			return &next, nil
		}
		return nil, nil
	case structs.StepIngest:
		if s.Outputs["trigger"] == "" {
			t, err := a.Host.TriggerSource(ctx, resolved.Source)
			if err != nil {
				return fail("asking source " + resolved.Source + " for a run: " + err.Error()), nil
			}
			next.Outputs["trigger"] = strconv.FormatUint(t, 10)
			return &next, nil
		}
		t, _ := strconv.ParseUint(s.Outputs["trigger"], 10, 64)
		src, err := a.Host.Source(resolved.Source)
		if err != nil {
			return fail(err.Error()), nil
		}
		last := src.LastRun
		if last == nil || last.Trigger < t || !last.Terminal() {
			return nil, nil
		}
		switch last.State {
		case structs.SourceRunSucceeded:
			ds := last.Dataset
			if ds == "" {
				// Nothing new was read: the source's data are its
				// dataset's latest version.
				if v, err := a.Host.LatestDataset(src.Spec.Dataset); err == nil {
					ds = v.Ref()
				}
			}
			return succeed(map[string]string{"run": strconv.FormatUint(last.Seq, 10), "dataset": ds}), nil
		case structs.SourceRunFailedValidation:
			return fail("source run " + strconv.FormatUint(last.Seq, 10) + " failed validation: " + strings.Join(last.Failed, "; ")), nil
		case structs.SourceRunFailed:
			if last.Interrupted {
				return nil, nil // the source's actor runs it again at once
			}
			return fail("source run " + strconv.FormatUint(last.Seq, 10) + " failed: " + last.Error), nil
		}
		return nil, nil
	case structs.StepEvaluate:
		res, ready := a.background(ctx, spec.Name, s.Attempts, func(ctx context.Context) (any, error) {
			m, c, err := a.Host.Evaluate(ctx, *resolved.Evaluate)
			return [2]map[string]float64{m, c}, err
		})
		if !ready {
			return nil, nil
		}
		if res.err != nil {
			return fail(res.err.Error()), nil
		}
		pair := res.value.([2]map[string]float64)
		metrics, champion := pair[0], pair[1]
		out := map[string]string{"passed": "true"}
		for k, v := range metrics {
			out["metrics."+k] = strconv.FormatFloat(v, 'g', -1, 64)
		}
		if gate := spec.Evaluate.Gate; gate != "" {
			ok, err := EvalGate(gate, metrics, champion)
			if err != nil || !ok {
				if err == nil {
					err = fmt.Errorf("the gate %q did not hold (%s)", gate, gateValues(gate, metrics, champion))
				}
				f := fail(err.Error())
				f.NoRetry = true // the same model on the same data: a retry would not pass
				maps.Copy(f.Outputs, out)
				f.Outputs["passed"] = "false"
				return f, nil
			}
		}
		return succeed(out), nil
	case structs.StepDeploy:
		return a.observeDeploy(ctx, resolved.Deploy, &next, now, fail, succeed)
	case structs.StepTune:
		id := s.Outputs["tuning_id"]
		tu, err := a.Host.Tuning(id)
		if structs.ErrorCode(err) == structs.CodeNotFound {
			if err := a.Host.SubmitTuning(ctx, id, *resolved.Tuning); err != nil {
				return fail("submitting its tuning: " + err.Error()), nil
			}
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		switch tu.State {
		case structs.TuningSucceeded:
			out := map[string]string{"tuning_id": tu.ID, "metrics." + tu.Spec.Metric: strconv.FormatFloat(tu.BestValue, 'g', -1, 64)}
			if tu.BestTrial >= 0 && tu.BestTrial < len(tu.Trials) {
				out["best_job"] = tu.Trials[tu.BestTrial].JobID
			}
			if tu.BestVersion > 0 {
				out["model"], out["model_version"] = tu.Spec.RegisterBestAs, strconv.FormatUint(tu.BestVersion, 10)
			}
			return succeed(out), nil
		case structs.TuningFailed, "cancelled":
			return fail(fmt.Sprintf("tuning %s %s: %s", tu.ID, tu.State, tu.Reason)), nil
		}
		return nil, nil
	case structs.StepApproval:
		d := s.Decision
		switch {
		case d == nil:
			// Undecided: the step says what it waits for, once.
			if want := structs.AwaitingApproval + resolved.Approval.Message; next.Waiting != want {
				next.Waiting = want
				return &next, nil
			}
			return nil, nil
		case d.Approved:
			return succeed(map[string]string{"approved_by": d.By}), nil
		}
		f := fail(fmt.Sprintf("rejected by %s%s", d.By, commentSuffix(d.Comment)))
		f.NoRetry = true // a person said no; a retry would ask again
		return f, nil
	case structs.StepWaitFor:
		w := resolved.WaitFor
		if w.Alert != "" {
			// An alert that fires after the run started; a run started by
			// that alert's firing waits for the next one.
			al, err := a.Host.Alert(w.Alert)
			if structs.ErrorCode(err) == structs.CodeNotFound {
				return fail(fmt.Sprintf("alert rule %q does not exist", w.Alert)), nil
			}
			if err != nil {
				return nil, err
			}
			if al.Fired > 0 && al.FiredAt.After(run.CreatedAt) {
				return succeed(map[string]string{"alert": al.Rule}), nil
			}
			return nil, nil
		}
		name, n, err := structs.ParseDatasetRef("wait_for.dataset", w.Dataset)
		if err != nil {
			return fail(err.Error()), nil
		}
		v, err := a.Host.LatestDataset(name)
		if structs.ErrorCode(err) == structs.CodeNotFound {
			return nil, nil // not yet
		}
		if err != nil {
			return nil, err
		}
		// A named version waits for that version; a name alone for a
		// version made after the run started.
		if (n > 0 && v.Version >= n) || (n == 0 && v.CreatedAt.After(run.CreatedAt)) {
			ref := v.Ref()
			if n > 0 {
				ref = structs.DatasetRef(name, n)
			}
			return succeed(map[string]string{"dataset": ref}), nil
		}
		return nil, nil
	case structs.StepFeatures:
		res, ready := a.background(ctx, spec.Name, s.Attempts, func(ctx context.Context) (any, error) {
			return a.Host.Frame(ctx, *resolved.Features)
		})
		if !ready {
			return nil, nil
		}
		if res.err != nil {
			return fail(res.err.Error()), nil
		}
		return succeed(map[string]string{"dataset": res.value.(string)}), nil
	}
	return fail(fmt.Sprintf("%s steps are not run yet by this version of Kiln", spec.Type)), nil
}

// commentSuffix is a decision's comment as the end of a sentence.
func commentSuffix(c string) string {
	if c == "" {
		return ""
	}
	return ": " + c
}

// stepJob is the job a train or command step submits.
func stepJob(run *structs.PipelineRun, spec *structs.StepSpec) structs.JobSpec {
	if spec.Type == structs.StepTrain {
		j := *spec.Job
		if j.Name == "" {
			j.Name = run.Pipeline + "-" + spec.Name
		}
		return j
	}
	return structs.JobSpec{Name: strings.ReplaceAll(run.Pipeline+"-"+spec.Name, "_", "-"), Experiment: run.Pipeline,
		Trainer: structs.TrainerSpec{Kind: structs.TrainerProcess, Command: spec.Command, Env: spec.Env}}
}

// refRE finds a reference, ${...}, as structs.StepSpec.References does.
var refRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// cacheKey is the digest of a resolved step's inputs: its spec with the
// references resolved, and the digests of the versions it reads.
func (a *RunActor) cacheKey(resolved *structs.StepSpec) (string, error) {
	digests, err := a.Host.InputDigests(resolved)
	if err != nil {
		return "", err
	}
	spec, err := json.Marshal(resolved)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(spec)
	for _, d := range slices.Sorted(slices.Values(digests)) {
		h.Write([]byte("\n" + d))
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// errUnresolved is the cause of a reference that names no value.
var errUnresolved = errors.New("pipeline: a reference has no value")

// resolveStep returns a copy of a step with its references replaced by
// their values: the run's params, and the outputs of steps before it.
func resolveStep(run *structs.PipelineRun, spec *structs.StepSpec, statuses map[string]*structs.StepStatus) (*structs.StepSpec, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var failed error
	lookup := func(text string) (any, bool) {
		parts := strings.Split(strings.TrimSpace(text), ".")
		if len(parts) == 2 && parts[0] == "params" {
			v, ok := run.Params[parts[1]]
			return v, ok
		}
		if len(parts) >= 3 && parts[0] == "steps" {
			st := statuses[parts[1]]
			if st == nil {
				return nil, false
			}
			v, ok := st.Outputs[strings.Join(parts[2:], ".")]
			return v, ok
		}
		return nil, false
	}
	// A string that is one reference takes the value's type (a number
	// param stays a number); a reference inside text is replaced by text.
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			if m := refRE.FindStringSubmatch(x); m != nil && m[0] == x {
				val, ok := lookup(m[1])
				if !ok {
					failed = fmt.Errorf("%w: ${%s}", errUnresolved, m[1])
					return x
				}
				return val
			}
			return refRE.ReplaceAllStringFunc(x, func(ref string) string {
				val, ok := lookup(ref[2 : len(ref)-1])
				if !ok {
					failed = fmt.Errorf("%w: %s", errUnresolved, ref)
					return ref
				}
				return fmt.Sprint(val)
			})
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		}
		return v
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	tree = walk(tree)
	if failed != nil {
		return nil, failed
	}
	out, err := json.Marshal(tree)
	if err != nil {
		return nil, err
	}
	var resolved structs.StepSpec
	if err := json.Unmarshal(out, &resolved); err != nil {
		return nil, fmt.Errorf("pipeline: step %s after its references: %w", spec.Name, err)
	}
	return &resolved, nil
}

// gateRefRE finds the metrics a gate reads.
var gateRefRE = regexp.MustCompile(`\b(metrics|champion)\.([A-Za-z_][A-Za-z0-9_]*)`)

// EvalGate evaluates a gate over an evaluation's metrics and its
// champion's. A metric the gate reads that the evaluation did not give is
// an error naming it.
func EvalGate(gate string, metrics, champion map[string]float64) (bool, error) {
	for _, m := range gateRefRE.FindAllStringSubmatch(gate, -1) {
		src := metrics
		if m[1] == "champion" {
			src = champion
		}
		if _, ok := src[m[2]]; !ok {
			return false, fmt.Errorf("the gate reads %s.%s, which the evaluation did not give (it gave %s)", m[1], m[2], strings.Join(slices.Sorted(maps.Keys(src)), ", "))
		}
	}
	prog, err := expr.Compile(gate, expr.Env(map[string]any{"metrics": map[string]float64{}, "champion": map[string]float64{}}), expr.AsBool())
	if err != nil {
		return false, fmt.Errorf("the gate %q does not compile: %v", gate, err)
	}
	out, err := expr.Run(prog, map[string]any{"metrics": metrics, "champion": champion})
	if err != nil {
		return false, fmt.Errorf("the gate %q: %v", gate, err)
	}
	return out.(bool), nil
}

// gateValues lists the values a gate read, for its failure message.
func gateValues(gate string, metrics, champion map[string]float64) string {
	var parts []string
	seen := map[string]bool{}
	for _, m := range gateRefRE.FindAllStringSubmatch(gate, -1) {
		if seen[m[0]] {
			continue
		}
		seen[m[0]] = true
		src := metrics
		if m[1] == "champion" {
			src = champion
		}
		parts = append(parts, fmt.Sprintf("%s = %.6g", m[0], src[m[2]]))
	}
	return strings.Join(parts, ", ")
}

// observeDeploy moves a deploy step along: it puts the new version on a
// canary beside the version the deployment weighs most (recording that
// version and the new one's request counts, so that a new actor goes on
// from there), watches the canary's errors and latency, and promotes it
// once the watch is over or rolls it back at the first breach. A model
// without a deployment gets the version at once.
func (a *RunActor) observeDeploy(ctx context.Context, d *structs.DeployStep, next *structs.StepStatus, now time.Time,
	fail func(string) *structs.StepStatus, succeed func(map[string]string) *structs.StepStatus) (*structs.StepStatus, error) {
	ver, err := strconv.ParseUint(d.Version, 10, 64)
	if err != nil || ver == 0 {
		return fail(fmt.Sprintf("deploy.version %q is not a version number", d.Version)), nil
	}
	out := next.Outputs
	promoted := map[string]string{"model": d.Model, "version": d.Version, "promoted": "true"}
	if out["phase"] == "" {
		dep, err := a.Host.Deployment(d.Model)
		if structs.ErrorCode(err) == structs.CodeNotFound {
			if err := a.Host.SetTraffic(ctx, d.Model, []structs.TrafficSplit{{Version: ver, Weight: 100}}); err != nil {
				return fail("deploying: " + err.Error()), nil
			}
			return succeed(promoted), nil
		}
		if err != nil {
			return nil, err
		}
		prev, canaryOn := uint64(0), false
		for _, t := range dep.Traffic.Versions {
			switch {
			case t.Version == ver && t.Weight == d.Canary:
				canaryOn = true // set before this actor's predecessor could record it
			case t.Version != ver && (prev == 0 || t.Weight > weightOf(dep, prev)):
				prev = t.Version
			}
		}
		if prev == 0 {
			return succeed(promoted), nil // it is all the deployment serves already
		}
		req, errs, _ := a.Host.VersionStats(ctx, d.Model, ver)
		if !canaryOn {
			if err := a.Host.SetTraffic(ctx, d.Model, []structs.TrafficSplit{{Version: prev, Weight: 100 - d.Canary}, {Version: ver, Weight: d.Canary}}); err != nil {
				return fail("putting the canary on: " + err.Error()), nil
			}
		}
		out["phase"], out["previous"], out["canary_since"] = "canary", strconv.FormatUint(prev, 10), now.Format(time.RFC3339Nano)
		out["base_requests"], out["base_errors"] = strconv.FormatUint(req, 10), strconv.FormatUint(errs, 10)
		return next, nil
	}
	since, _ := time.Parse(time.RFC3339Nano, out["canary_since"])
	prev, _ := strconv.ParseUint(out["previous"], 10, 64)
	baseReq, _ := strconv.ParseUint(out["base_requests"], 10, 64)
	baseErr, _ := strconv.ParseUint(out["base_errors"], 10, 64)
	req, errs, p99 := a.Host.VersionStats(ctx, d.Model, ver)
	dr, de := float64(req-min(req, baseReq)), float64(errs-min(errs, baseErr))
	breach := ""
	switch {
	case d.MaxErrorRate > 0 && dr > 0 && de/dr > d.MaxErrorRate:
		breach = fmt.Sprintf("error rate %.4g over %g requests, above %g", de/dr, dr, d.MaxErrorRate)
	case d.MaxP99MS > 0 && dr > 0 && p99 > d.MaxP99MS:
		breach = fmt.Sprintf("p99 latency %.4g ms, above %g ms", p99, d.MaxP99MS)
	}
	if breach != "" {
		if err := a.Host.SetTraffic(ctx, d.Model, []structs.TrafficSplit{{Version: prev, Weight: 100}}); err != nil {
			return nil, err // the rollback is retried on the next pass
		}
		f := fail("rolled back to version " + out["previous"] + ": " + breach)
		f.NoRetry = true
		f.Outputs["promoted"] = "false"
		return f, nil
	}
	watch, _ := structs.ParseSpan(d.Watch)
	if now.Sub(since) < watch {
		return nil, nil
	}
	if err := a.Host.SetTraffic(ctx, d.Model, []structs.TrafficSplit{{Version: ver, Weight: 100}}); err != nil {
		return nil, err
	}
	promoted["requests"], promoted["errors"] = strconv.FormatFloat(dr, 'f', 0, 64), strconv.FormatFloat(de, 'f', 0, 64)
	return succeed(promoted), nil
}

func weightOf(d *structs.Deployment, v uint64) int {
	for _, t := range d.Traffic.Versions {
		if t.Version == v {
			return t.Weight
		}
	}
	return 0
}
