package serving

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// fakeProposer records the status reports a Reconciler proposes, failing the
// first ones when told to.
type fakeProposer struct {
	mu    sync.Mutex
	fail  int        // guarded by mu: how many more calls fail
	calls []proposal // guarded by mu
}

type proposal struct {
	updates []structs.AllocStatusUpdate
	err     error
}

func (p *fakeProposer) propose(ctx context.Context, t structs.MessageType, cmd any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	req, ok := cmd.(*structs.AllocStatusRequest)
	if t != structs.AllocStatusType || !ok {
		err := fmt.Errorf("unexpected command %s %T", t, cmd)
		p.calls = append(p.calls, proposal{err: err})
		return err
	}
	call := proposal{updates: slices.Clone(req.Updates)}
	if p.fail > 0 {
		p.fail--
		call.err = errors.New("raft: leadership lost")
	}
	p.calls = append(p.calls, call)
	return call.err
}

// reports returns the updates for alloc in successful proposals, in order.
func (p *fakeProposer) reports(alloc string) []structs.AllocStatusUpdate {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []structs.AllocStatusUpdate
	for _, c := range p.calls {
		if c.err != nil {
			continue
		}
		for _, u := range c.updates {
			if u.ID == alloc {
				out = append(out, u)
			}
		}
	}
	return out
}

func (p *fakeProposer) all() []proposal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// reported reports whether alloc was reported in state, successfully.
func (p *fakeProposer) reported(alloc, state string) bool {
	for _, u := range p.reports(alloc) {
		if u.State == state {
			return true
		}
	}
	return false
}

// reconcilerFixture is node "n1" with a registry, an actors.System and a
// running Reconciler.
type reconcilerFixture struct {
	sys      *actors.System
	reg      *memRegistry
	proposer *fakeProposer
	changed  chan struct{}
	loads    atomic.Int32
	// loadErr, when set, fails every load.
	loadErr atomic.Pointer[error]
	// model, when set, is what a load returns instead of a fresh sumModel.
	model ml.Model
	// withIndex gives the Reconciler the registry's index, so that a poke
	// with no change starts no pass; interval replaces the 20 ms default.
	withIndex bool
	interval  time.Duration
	// exec is the node's exec config (zero: process replicas refused).
	exec ExecPolicy
	// workDir is the Reconciler's WorkDir, there before it starts.
	workDir string

	cancel context.CancelFunc
	done   chan struct{}
}

// newReconcilerFixture records model "m" version 1 deployed; configure may
// change the fixture before the Reconciler starts.
func newReconcilerFixture(t *testing.T, configure func(*reconcilerFixture)) *reconcilerFixture {
	t.Helper()
	f := &reconcilerFixture{
		sys:      testActorSystem(t, "n1"),
		reg:      newMemRegistry(),
		proposer: &fakeProposer{},
		changed:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		workDir:  t.TempDir(),
	}
	f.reg.putModel(structs.Model{Name: "m"})
	f.reg.putVersion(structs.ModelVersion{Model: "m", Version: 1, Format: ml.FormatLinear, Digest: "sha256:m-1"})
	f.reg.putDeployment(structs.Deployment{Name: "m", Replicas: 1, Traffic: structs.Traffic{Versions: []structs.TrafficSplit{{Version: 1, Weight: 1}}}})
	if configure != nil {
		configure(f)
	}
	var index func() uint64
	if f.withIndex {
		index = f.reg.Index
	}
	r := NewReconciler(ReconcilerConfig{
		Index:    index,
		NodeID:   "n1",
		System:   f.sys,
		View:     f.reg.view,
		Changed:  func() <-chan struct{} { return f.changed },
		Propose:  f.proposer.propose,
		Blobs:    &fakeBlobs{},
		Load:     f.load,
		WorkDir:  f.workDir,
		Exec:     f.exec,
		Interval: cmp.Or(f.interval, 20*time.Millisecond),
	})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		r.Run(ctx)
	}()
	t.Cleanup(func() { f.stop(t) }) // before the System shuts down
	return f
}

func (f *reconcilerFixture) load(format, path string, _ ml.LoadOptions) (ml.Model, error) {
	f.loads.Add(1)
	if err := f.loadErr.Load(); err != nil {
		return nil, *err
	}
	if path != "/blobs/sha256:m-1" {
		return nil, fmt.Errorf("load of unexpected artifact %q", path)
	}
	if f.model != nil {
		return f.model, nil
	}
	return newSumModel(false), nil
}

// stop ends Run and waits for it to return.
func (f *reconcilerFixture) stop(t *testing.T) {
	t.Helper()
	f.cancel()
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Error("Run did not return within 10s of its context ending")
	}
}

// poke tells the Reconciler that the registry changed.
func (f *reconcilerFixture) poke() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// passes waits until the Reconciler has read the registry n more times, so
// what it would do on those passes has been done.
func (f *reconcilerFixture) passes(t *testing.T, n int64) {
	t.Helper()
	target := f.reg.views.Load() + n
	testutil.Until(t, 5*time.Second, "", func() bool { return f.reg.views.Load() >= target })
}

func (f *reconcilerFixture) shardGen(id string) (uint64, bool) {
	ref, ok := f.sys.Lookup(ShardKind, id)
	return ref.Gen, ok
}

func allocOn(id, node string, gen uint64) structs.Allocation {
	return structs.Allocation{ID: id, Deployment: "m", Version: 1, NodeID: node, State: structs.AllocPending, CreateIndex: gen}
}

func TestReconciler_StartsAssignedReplicas(t *testing.T) {
	f := newReconcilerFixture(t, func(f *reconcilerFixture) {
		f.reg.putAlloc(allocOn("mine", "n1", 7))
		f.reg.putAlloc(allocOn("theirs", "n2", 8))
	})

	testutil.Until(t, 5*time.Second, "", func() bool { return f.proposer.reported("mine", structs.AllocRunning) })
	if gen, ok := f.shardGen("mine"); !ok || gen != 7 {
		t.Fatalf("shard of the allocation: running %v, gen %d; want running with gen 7", ok, gen)
	}
	a := allocOn("mine", "n1", 7)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := f.sys.Ask(ctx, ShardRef(&a), &PredictRequest{Inputs: []ml.Tensor{matrix(1, 1, 2)}})
	if err != nil {
		t.Fatalf("the started replica does not answer: %v", err)
	}
	if out := reply.(*PredictReply).Outputs; !slices.Equal(out[0].Data, rowSums([]ml.Tensor{matrix(1, 1, 2)})) {
		t.Fatalf("the started replica answered %v", out)
	}

	f.passes(t, 3)
	if u := f.proposer.reports("mine"); len(u) != 1 || u[0].NodeID != "n1" {
		t.Fatalf("reports for the replica: %+v, want a single running report from n1", u)
	}
	if _, ok := f.shardGen("theirs"); ok {
		t.Fatal("a replica assigned to another node was started here")
	}
	if u := f.proposer.reports("theirs"); len(u) != 0 {
		t.Fatalf("another node's replica was reported: %+v", u)
	}
	if n := f.loads.Load(); n != 1 {
		t.Fatalf("the model was loaded %d times, want once", n)
	}
}

func TestReconciler_StopsReplicaNoLongerAssigned(t *testing.T) {
	tests := []struct {
		name   string
		change func(f *reconcilerFixture)
		// wantGen is the generation running afterwards; 0 for none.
		wantGen uint64
	}{
		{name: "allocation removed", change: func(f *reconcilerFixture) { f.reg.deleteAlloc("a1") }},
		{name: "allocation moved to another node", change: func(f *reconcilerFixture) { f.reg.putAlloc(allocOn("a1", "n2", 7)) }},
		{name: "deployment removed", change: func(f *reconcilerFixture) {
			f.reg.change(func() { delete(f.reg.deployments, "m") })
		}},
		{name: "allocation replaced under a new generation", change: func(f *reconcilerFixture) { f.reg.putAlloc(allocOn("a1", "n1", 9)) }, wantGen: 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newReconcilerFixture(t, func(f *reconcilerFixture) { f.reg.putAlloc(allocOn("a1", "n1", 7)) })
			testutil.Until(t, 5*time.Second, "", func() bool { return f.proposer.reported("a1", structs.AllocRunning) })
			tc.change(f)
			f.poke()
			testutil.Until(t, 5*time.Second, "", func() bool {
				gen, ok := f.shardGen("a1")
				return ok == (tc.wantGen != 0) && gen == tc.wantGen
			})
		})
	}
}

func TestReconciler_ReportsFailedLoad(t *testing.T) {
	loadErr := errors.New("disk on fire")
	f := newReconcilerFixture(t, func(f *reconcilerFixture) {
		f.loadErr.Store(&loadErr)
		f.reg.putAlloc(allocOn("a1", "n1", 7))
	})

	// The shard restarts 3 times with the actors' default backoff (100, 200
	// and 400 ms) before it gives up: about 0.7 s.
	testutil.Until(t, 10*time.Second, "", func() bool { return f.proposer.reported("a1", structs.AllocFailed) })
	u := f.proposer.reports("a1")
	if len(u) != 1 || !strings.Contains(u[0].Message, loadErr.Error()) {
		t.Fatalf("reports %+v, want one failed report naming %q", u, loadErr)
	}
	if n := f.loads.Load(); n != 4 {
		t.Fatalf("the model was loaded %d times, want 4 (the start and 3 restarts)", n)
	}
	f.passes(t, 3)
	if _, ok := f.shardGen("a1"); ok {
		t.Fatal("a replica reported failed was started again")
	}
	if n := f.loads.Load(); n != 4 {
		t.Fatalf("the model was loaded %d times after the failure was reported, want still 4", n)
	}
}

// unhealthyModel is a sumModel that can say it can no longer serve, as a
// process replica does when its server keeps crashing.
type unhealthyModel struct {
	*sumModel
	failed atomic.Pointer[error]
}

func (m *unhealthyModel) Failed() error {
	if err := m.failed.Load(); err != nil {
		return *err
	}
	return nil
}

func TestReconciler_ReportsReplicaThatCannotServe(t *testing.T) {
	model := &unhealthyModel{sumModel: newSumModel(false)}
	f := newReconcilerFixture(t, func(f *reconcilerFixture) {
		f.model = model
		f.reg.putAlloc(allocOn("a1", "n1", 7))
	})
	testutil.Until(t, 5*time.Second, "", func() bool { return f.proposer.reported("a1", structs.AllocRunning) })

	gone := errors.New("server exited 5 times")
	model.failed.Store(&gone)
	testutil.Until(t, 5*time.Second, "", func() bool { return f.proposer.reported("a1", structs.AllocFailed) })
	if u := f.proposer.reports("a1"); !strings.Contains(u[len(u)-1].Message, gone.Error()) {
		t.Fatalf("the failed report %+v does not say why", u[len(u)-1])
	}
}

func TestReconciler_RetriesFailedPropose(t *testing.T) {
	loadErr := errors.New("disk on fire")
	tests := []struct {
		name      string
		loadErr   error
		wantState string
	}{
		{name: "running", wantState: structs.AllocRunning},
		// A failure is reported once, by the actor giving up: only the retry
		// of the failed proposal gets it through.
		{name: "failed", loadErr: loadErr, wantState: structs.AllocFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newReconcilerFixture(t, func(f *reconcilerFixture) {
				f.proposer.fail = 2
				if tc.loadErr != nil {
					f.loadErr.Store(&tc.loadErr)
				}
				f.reg.putAlloc(allocOn("a1", "n1", 7))
			})
			testutil.Until(t, 10*time.Second, "", func() bool { return f.proposer.reported("a1", tc.wantState) })

			calls := f.proposer.all()
			if len(calls) < 3 {
				t.Fatalf("%d proposals, want the 2 that failed and one that did not", len(calls))
			}
			for i, c := range calls[:2] {
				if c.err == nil || len(c.updates) != 1 || c.updates[0].ID != "a1" || c.updates[0].State != tc.wantState {
					t.Fatalf("proposal %d = %+v, want a failed %s report for a1", i, c, tc.wantState)
				}
			}
			if u := f.proposer.reports("a1"); len(u) != 1 {
				t.Fatalf("successful reports for a1: %+v, want exactly one", u)
			}
			// Had the report been lost, the replica would have been started
			// (and loaded) again.
			if want := map[bool]int32{false: 1, true: 4}[tc.loadErr != nil]; f.loads.Load() != want {
				t.Fatalf("the model was loaded %d times, want %d", f.loads.Load(), want)
			}
		})
	}
}

func TestReconciler_RunEndsWithItsContext(t *testing.T) {
	before := goleak.IgnoreCurrent()
	sys, err := actors.NewSystem(actors.Config{NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	reg := newMemRegistry()
	reg.putModel(structs.Model{Name: "m"})
	reg.putVersion(structs.ModelVersion{Model: "m", Version: 1, Format: ml.FormatLinear})
	reg.putDeployment(structs.Deployment{Name: "m", Replicas: 1, Traffic: structs.Traffic{Versions: []structs.TrafficSplit{{Version: 1, Weight: 1}}}})
	reg.putAlloc(allocOn("a1", "n1", 7))
	proposer := &fakeProposer{}
	r := NewReconciler(ReconcilerConfig{
		NodeID:  "n1",
		System:  sys,
		View:    reg.view,
		Changed: func() <-chan struct{} { return nil },
		Propose: proposer.propose,
		Blobs:   &fakeBlobs{},
		Load: func(format, path string, _ ml.LoadOptions) (ml.Model, error) {
			return newSumModel(false), nil
		},
		Interval: 10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	testutil.Until(t, 5*time.Second, "", func() bool { return proposer.reported("a1", structs.AllocRunning) })

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := sys.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}

func TestReconciler_SkipsPassesWhenServingStateIsUnchanged(t *testing.T) {
	f := newReconcilerFixture(t, func(f *reconcilerFixture) {
		f.withIndex = true
		f.interval = time.Hour // no ticks: only pokes start passes
	})
	f.passes(t, 0)
	testutil.Until(t, 5*time.Second, "", func() bool { return f.reg.views.Load() == 1 }) // the first pass
	for range 5 {
		f.poke()
		testutil.Until(t, 5*time.Second, "", func() bool { return len(f.changed) == 0 })
	}
	a := allocOn("a9", "n1", 3)
	f.reg.putAlloc(a)
	f.poke()
	testutil.Until(t, 5*time.Second, "", func() bool { _, ok := f.shardGen("a9"); return ok })
	// Passes run one after another, so a pass for any of the five pokes
	// would have come before the one that started a9.
	if got := f.reg.views.Load(); got != 2 {
		t.Fatalf("the registry was read %d times, want 2: pokes without a change must start no pass", got)
	}
}

// A node whose own exec config does not allow a process replica's command
// refuses to start it, whatever the registry says: the allocation is
// reported failed with the command and the config key, and nothing runs.
func TestReconciler_RefusesProcessNotAllowed(t *testing.T) {
	tests := []struct {
		name    string
		exec    ExecPolicy
		env     map[string]string
		wantMsg []string
	}{
		{"exec disabled", ExecPolicy{}, nil, []string{`command "sh"`, "exec.enabled"}},
		{"command not listed", ExecPolicy{NodeExec: structs.NodeExec{Enabled: true, AllowedCommands: []string{"python3"}}}, nil,
			[]string{`command "sh"`, "exec.allowed_commands"}},
		{"LD_PRELOAD not listed", ExecPolicy{NodeExec: structs.NodeExec{Enabled: true, AllowedCommands: []string{"*"}}},
			map[string]string{"LD_PRELOAD": "/tmp/x.so"}, []string{"LD_PRELOAD", "exec.allowed_env"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ran")
			f := newReconcilerFixture(t, func(f *reconcilerFixture) {
				f.exec = tc.exec
				f.reg.putVersion(structs.ModelVersion{Model: "m", Version: 1, Format: structs.FormatProcess,
					Process: &structs.ProcessSpec{Command: []string{"sh", "-c", "touch " + marker + "; exec sleep 30"}, Env: tc.env}})
				f.reg.putAlloc(allocOn("a1", "n1", 7))
			})
			testutil.Until(t, 10*time.Second, "", func() bool { return f.proposer.reported("a1", structs.AllocFailed) })
			u := f.proposer.reports("a1")
			for _, s := range tc.wantMsg {
				if !strings.Contains(u[len(u)-1].Message, s) {
					t.Errorf("failed report %q does not mention %s", u[len(u)-1].Message, s)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the refused command ran")
			}
		})
	}
}

// pathExists reports whether path exists (fileExists is in a unix-only
// file; these tests run everywhere).
func pathExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// makeWorkDir creates the work dir of allocation id under the fixture's
// WorkDir, with a log in it, as a process replica leaves it.
func (f *reconcilerFixture) makeWorkDir(t *testing.T, id string) string {
	t.Helper()
	dir := filepath.Join(f.workDir, id)
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "process.log"), []byte("serving\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReconciler_RemovesWorkDirOfReplicaGone(t *testing.T) {
	tests := []struct {
		name     string
		change   func(f *reconcilerFixture)
		wantGone bool
	}{
		{name: "allocation removed", change: func(f *reconcilerFixture) { f.reg.deleteAlloc("a1") }, wantGone: true},
		{name: "allocation moved to another node", change: func(f *reconcilerFixture) { f.reg.putAlloc(allocOn("a1", "n2", 7)) }, wantGone: true},
		{name: "allocation replaced under a new generation", change: func(f *reconcilerFixture) { f.reg.putAlloc(allocOn("a1", "n1", 9)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newReconcilerFixture(t, func(f *reconcilerFixture) { f.reg.putAlloc(allocOn("a1", "n1", 7)) })
			testutil.Until(t, 5*time.Second, "", func() bool { return f.proposer.reported("a1", structs.AllocRunning) })
			dir := f.makeWorkDir(t, "a1")
			f.passes(t, 3)
			if !pathExists(dir) {
				t.Fatal("the work dir of a running replica was removed")
			}

			tc.change(f)
			f.poke()
			if tc.wantGone {
				testutil.Until(t, 5*time.Second, "", func() bool { return !pathExists(dir) })
				if _, ok := f.shardGen("a1"); ok {
					t.Fatal("the work dir was removed while its replica still runs")
				}
				return
			}
			testutil.Until(t, 5*time.Second, "", func() bool { gen, _ := f.shardGen("a1"); return gen == 9 })
			f.passes(t, 3)
			if !pathExists(filepath.Join(dir, "process.log")) {
				t.Fatal("the work dir of a replica restarted under a new generation was removed")
			}
		})
	}
}

// A failed replica's log is what says why it failed: its dir stays until
// the leader removes the allocation.
func TestReconciler_KeepsWorkDirOfFailedReplicaUntilRemoved(t *testing.T) {
	loadErr := errors.New("disk on fire")
	f := newReconcilerFixture(t, func(f *reconcilerFixture) {
		f.loadErr.Store(&loadErr)
		f.reg.putAlloc(allocOn("a1", "n1", 7))
	})
	dir := f.makeWorkDir(t, "a1")
	testutil.Until(t, 10*time.Second, "", func() bool { return f.proposer.reported("a1", structs.AllocFailed) })
	failed := allocOn("a1", "n1", 7)
	failed.State = structs.AllocFailed
	f.reg.putAlloc(failed)
	f.poke()
	f.passes(t, 3)
	if !pathExists(dir) {
		t.Fatal("the work dir of a failed replica was removed while its allocation remains")
	}
	f.reg.deleteAlloc("a1")
	f.poke()
	testutil.Until(t, 5*time.Second, "", func() bool { return !pathExists(dir) })
}

// A node that crashed, or stopped before it could clean up, finds the dirs
// of replicas that are gone since; the first pass removes them.
func TestReconciler_RemovesWorkDirsLeftFromBefore(t *testing.T) {
	var left, kept []string
	f := newReconcilerFixture(t, func(f *reconcilerFixture) {
		failed := allocOn("failed", "n1", 8)
		failed.State = structs.AllocFailed
		f.reg.putAlloc(allocOn("mine", "n1", 7))
		f.reg.putAlloc(failed)
		f.reg.putAlloc(allocOn("theirs", "n2", 9))
		left = []string{f.makeWorkDir(t, "gone"), f.makeWorkDir(t, "theirs")}
		kept = []string{f.makeWorkDir(t, "mine"), f.makeWorkDir(t, "failed"), filepath.Join(f.workDir, "notes.txt")}
		if err := os.WriteFile(kept[2], []byte("not a replica's"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	testutil.Until(t, 5*time.Second, "", func() bool { return !pathExists(left[0]) && !pathExists(left[1]) })
	f.passes(t, 3)
	for _, p := range kept {
		if !pathExists(p) {
			t.Errorf("%s was removed; it belongs to an allocation of this node, or is no replica's dir", p)
		}
	}
}
