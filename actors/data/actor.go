package data

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Host is what a source's actor needs of its node.
type Host interface {
	// Source reads a source with the feature views that read it and their
	// entities, as this node's registry has them.
	Source(name string) (*structs.Source, []*structs.FeatureView, map[string]*structs.Entity, error)
	// Ingest commits a batch. already_exists means the position moved
	// under it: another actor committed it.
	Ingest(ctx context.Context, req *structs.SourceIngestRequest) error
	// ReportRun records a run (Seq 0: a new run) and returns it stored.
	ReportRun(ctx context.Context, req *structs.SourceRunRequest) (*structs.SourceRun, error)
	// OpenReader connects to the source.
	OpenReader(s *structs.Source) (Reader, error)
	// Output receives a run's accepted records as it goes, and ends with
	// the run: it may store them as a dataset version (nil: nothing kept).
	Output(s *structs.Source, run *structs.SourceRun) (Output, error)
	// Changed fires when the registry changes.
	Changed() <-chan struct{}
	// FeatureIndex is the index of the last change to sources, feature
	// views or entities: a running read checks it before each commit, so
	// that a view declared while a stream runs gets its records.
	FeatureIndex() uint64
}

// Output keeps a run's accepted records, for the source's dataset.
type Output interface {
	// Write takes records committed to the registry, in order.
	Write(recs []Record) error
	// Quarantine takes the records kept out of them, with why.
	Quarantine(recs []Quarantined) error
	// Close ends the output with the run: keep says whether to store what
	// it holds, failed lists the batch expectations the run failed. It
	// returns the dataset version written ("name:version"), "" for none.
	Close(ctx context.Context, keep bool, failed []string) (string, error)
}

// errRestart ends a read whose source changed under it (its spec, or
// views that make its batches too large): the next read starts at once.
var errRestart = errors.New("data: the source changed; reading again")

// Backoff of a failing source: the wait before a retry doubles from
// minBackoff with each failure in a row, up to maxBackoff.
const (
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
)

// Backoff is the wait after failures failed runs in a row.
func Backoff(failures int) time.Duration {
	d := minBackoff
	for i := 1; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// Segments of a stream's dataset (see read): a segment becomes a dataset
// version once it holds SegmentRows records or is SegmentAge old. Push
// sources, whose records come to the node's endpoint, use the same bounds.
const (
	SegmentRows = 1_000_000
	SegmentAge  = time.Hour
)

// rowsPerCommit bounds the rows of one commit; a reader's batch is sized so
// that its records' rows, one per view, stay within it.
const rowsPerCommit = 4000

func batchSize(views int) int { return max(100, rowsPerCommit/max(1, views)) }

// Actor runs one source on the node it is placed on: it reads in runs
// when asked (or for a stream, continuously), commits each batch with its
// position, records every run, and retries a failed one with backoff. It
// never runs two reads of its source at once; two actors of one source (a
// placement that moved while the old node still ran) cannot both commit,
// because each batch's position is compared in Apply.
type Actor struct {
	Name   string
	NodeID string
	// Gen is the source's AssignIndex when the actor was started.
	Gen  uint64
	Host Host
	Log  hclog.Logger
	// now is time.Now, replaced by tests.
	now func() time.Time
}

// Run works until ctx ends, or until the source is no longer this actor's
// to read (moved, paused, deleted).
func (a *Actor) Run(ctx context.Context) {
	if a.now == nil {
		a.now = time.Now
	}
	for ctx.Err() == nil {
		s, _, _, err := a.Host.Source(a.Name)
		if err != nil || s.Node != a.NodeID || s.AssignIndex != a.Gen || s.Paused {
			return // the reconciler stops this actor
		}
		last := s.LastRun
		if last != nil && !last.Terminal() {
			// A run this actor did not finish: its node died, or this
			// node restarted. Its batches are committed with their
			// position; what it had not committed is read again.
			a.finishInterrupted(ctx, last)
			continue
		}
		stream := structs.StreamingKind(s.Spec.Kind)
		triggered := s.Triggers > 0 && (last == nil || last.Trigger < s.Triggers)
		failed := last != nil && last.State == structs.SourceRunFailed
		var wake time.Duration
		switch {
		case failed && last.Interrupted && (stream || triggered || last.Trigger > 0):
			// Cut short, not failing: again at once.
			a.runOnce(ctx, s, max(s.Triggers, last.Trigger)*boolInt(!stream))
			continue
		case failed && (stream || triggered || last.Trigger > 0):
			// Retried (or run anew) once the backoff has passed.
			if wake = last.FinishedAt.Add(Backoff(s.Failures)).Sub(a.now()); wake <= 0 {
				a.runOnce(ctx, s, max(s.Triggers, last.Trigger)*boolInt(!stream))
				continue
			}
		case stream || triggered:
			a.runOnce(ctx, s, s.Triggers*boolInt(!stream))
			continue
		}
		var timer <-chan time.Time
		if wake > 0 {
			timer = time.After(wake) // collected when not fired (Go 1.23 timers)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.Host.Changed():
		case <-timer:
		}
	}
}

func boolInt(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (a *Actor) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (a *Actor) finishInterrupted(ctx context.Context, r *structs.SourceRun) {
	done := *r
	done.State = structs.SourceRunFailed
	done.Error = "interrupted: the node running it stopped before it ended"
	done.Interrupted = true
	done.FinishedAt = a.now().UTC()
	if _, err := a.Host.ReportRun(ctx, &structs.SourceRunRequest{Run: done, Gen: a.Gen}); err != nil && ctx.Err() == nil {
		a.Log.Warn("closing an interrupted run failed", "source", a.Name, "run", r.Seq, "error", err)
		a.wait(ctx, time.Second)
	}
}

// runOnce makes one run: a pass for a source read in runs, a session for a
// stream. Its record says what came of it.
func (a *Actor) runOnce(ctx context.Context, s *structs.Source, trigger uint64) {
	start := a.now().UTC()
	run, err := a.Host.ReportRun(ctx, &structs.SourceRunRequest{Gen: a.Gen, Run: structs.SourceRun{
		Source: a.Name, Trigger: trigger, Node: a.NodeID, State: structs.SourceRunRunning, StartedAt: start,
	}})
	if err != nil {
		if ctx.Err() == nil {
			a.Log.Warn("starting a run failed", "source", a.Name, "error", err)
			a.wait(ctx, time.Second)
		}
		return
	}
	a.Log.Info("source run started", "source", a.Name, "run", run.Seq, "trigger", trigger)
	out, failed, err := a.read(ctx, s, run)
	stopped := (ctx.Err() != nil && errors.Is(err, context.Canceled)) || errors.Is(err, errRestart)
	run.FinishedAt = a.now().UTC()
	run.DurationMS = run.FinishedAt.Sub(start).Milliseconds()
	switch {
	case stopped && structs.StreamingKind(s.Spec.Kind):
		// A stream's session ends when its actor stops (a pause, a move,
		// the node shutting down): everything read is committed.
		run.State = structs.SourceRunSucceeded
	case stopped:
		// A run cut short: what it committed stays, the rest is read
		// again by the next run, at once.
		run.State, run.Error, run.Interrupted = structs.SourceRunFailed, "interrupted: its actor stopped (pause, move, shutdown, or a change of the source)", true
	case err != nil:
		run.State, run.Error = structs.SourceRunFailed, err.Error()
	case len(failed) > 0:
		run.State, run.Failed = structs.SourceRunFailedValidation, failed
	default:
		run.State = structs.SourceRunSucceeded
	}
	if out != "" {
		run.Dataset = out
	}
	if _, rerr := a.Host.ReportRun(context.WithoutCancel(ctx), &structs.SourceRunRequest{Run: *run, Gen: a.Gen}); rerr != nil {
		a.Log.Warn("recording the end of a run failed", "source", a.Name, "run", run.Seq, "error", rerr)
	}
	if err != nil {
		a.Log.Warn("source run failed", "source", a.Name, "run", run.Seq, "error", err)
	} else {
		a.Log.Info("source run ended", "source", a.Name, "run", run.Seq, "state", run.State, "read", run.Read, "accepted", run.Accepted, "quarantined", run.Quarantined)
	}
}

// read reads the source from its committed position to its end (or, for a
// stream, until ctx ends), committing batch by batch.
func (a *Actor) read(ctx context.Context, s *structs.Source, run *structs.SourceRun) (dataset string, failed []string, err error) {
	s, views, entities, err := a.Host.Source(a.Name)
	if err != nil {
		return "", nil, err
	}
	prep, err := NewPreparer(&s.Spec, views, entities)
	if err != nil {
		return "", nil, err
	}
	rd, err := a.Host.OpenReader(s)
	if err != nil {
		return "", nil, err
	}
	defer rd.Close()
	out, err := a.Host.Output(s, run)
	if err != nil {
		return "", nil, err
	}
	// A stream's records go out in segments: each one becomes a dataset
	// version once it holds segmentRows records or is segmentAge old, so
	// that a stream that runs for months still yields versions to train on.
	stream := structs.StreamingKind(s.Spec.Kind)
	segRows, segStart := int64(0), a.now()
	seal := func(ctx context.Context) error {
		if out == nil || segRows == 0 {
			return nil
		}
		ds, err := out.Close(context.WithoutCancel(ctx), true, nil)
		if err != nil {
			return fmt.Errorf("storing a segment of the stream: %w", err)
		}
		if ds != "" {
			run.Dataset = ds
		}
		out, err = a.Host.Output(s, run)
		segRows, segStart = 0, a.now()
		return err
	}
	pos := maps.Clone(s.Position)
	if pos == nil {
		pos = Position{}
	}
	batchNo := 0
	maxBatch := batchSize(len(views))
	seen := a.Host.FeatureIndex()
	emit := func(ctx context.Context, b Batch) error {
		batchNo++
		if idx := a.Host.FeatureIndex(); idx != seen {
			seen = idx
			now, views, entities, err := a.Host.Source(a.Name)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(now.Spec, s.Spec) || batchSize(len(views)) < maxBatch {
				// How to read changed, or a batch would now make too many
				// rows: this read ends, the batch uncommitted, and the
				// next starts anew, at once.
				return errRestart
			}
			if err := prep.SetViews(&s.Spec, views, entities); err != nil {
				return err
			}
		}
		n := batchNo
		p := prep.Prepare(&b, func(i int) string { return fmt.Sprintf("record %d of batch %d", i+1, n) }, nil)
		req := &structs.SourceIngestRequest{
			Source: a.Name, From: make(map[string]string, len(b.Advance)), Advance: b.Advance,
			Read: int64(b.Len()), Accepted: int64(len(p.Accepted)), Quarantined: int64(len(p.Quarantined)),
			Rows: p.Rows, At: a.now().UTC(),
			Dedupe: s.Spec.Rereadable(),
		}
		for k := range b.Advance {
			req.From[k] = pos[k]
		}
		if err := a.Host.Ingest(ctx, req); err != nil {
			return err
		}
		maps.Copy(pos, b.Advance)
		run.Read += req.Read
		run.Accepted += req.Accepted
		run.Quarantined += req.Quarantined
		for _, q := range p.Quarantined {
			if len(run.Quarantine) < structs.MaxRunQuarantineSample {
				run.Quarantine = append(run.Quarantine, structs.QuarantinedRecord(q))
			}
		}
		if out == nil {
			return nil
		}
		if err := out.Write(p.Accepted); err != nil {
			return err
		}
		if err := out.Quarantine(p.Quarantined); err != nil {
			return err
		}
		segRows += int64(len(p.Accepted))
		if stream && (segRows >= SegmentRows || a.now().Sub(segStart) >= SegmentAge) {
			return seal(ctx)
		}
		return nil
	}
	err = rd.Read(ctx, pos, maxBatch, emit)
	failed = prep.Checker().Finish()
	if out != nil {
		keep := err == nil || run.Accepted > 0
		ds, cerr := out.Close(context.WithoutCancel(ctx), keep, failed)
		if cerr != nil && err == nil {
			err = fmt.Errorf("storing the run's dataset: %w", cerr)
		}
		dataset = run.Dataset // a stream's last sealed segment, if any
		if ds != "" {
			dataset = ds
		}
	}
	return dataset, failed, err
}
