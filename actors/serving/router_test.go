package serving

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// memRegistry is an in-memory registry that tests change; every change
// moves its index. A view is a snapshot, so readers never see a change
// half-made.
type memRegistry struct {
	mu          sync.Mutex
	index       uint64                          // guarded by mu
	models      map[string]structs.Model        // guarded by mu
	versions    map[string]structs.ModelVersion // guarded by mu: by "model/version"
	deployments map[string]structs.Deployment   // guarded by mu
	allocs      map[string]structs.Allocation   // guarded by mu: by ID
	views       atomic.Int64                    // views opened
}

func newMemRegistry() *memRegistry {
	return &memRegistry{
		index:       1,
		models:      map[string]structs.Model{},
		versions:    map[string]structs.ModelVersion{},
		deployments: map[string]structs.Deployment{},
		allocs:      map[string]structs.Allocation{},
	}
}

func (r *memRegistry) change(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
	r.index++
}

func (r *memRegistry) putModel(m structs.Model) { r.change(func() { r.models[m.Name] = m }) }

func (r *memRegistry) putVersion(v structs.ModelVersion) {
	r.change(func() { r.versions[fmt.Sprintf("%s/%d", v.Model, v.Version)] = v })
}

func (r *memRegistry) putDeployment(d structs.Deployment) {
	r.change(func() { r.deployments[d.Name] = d })
}

func (r *memRegistry) putAlloc(a structs.Allocation) { r.change(func() { r.allocs[a.ID] = a }) }

func (r *memRegistry) deleteAlloc(id string) { r.change(func() { delete(r.allocs, id) }) }

func (r *memRegistry) Index() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index
}

// view opens a snapshot; it is the registry's ViewFunc.
func (r *memRegistry) view() (Registry, func()) {
	r.views.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	v := &memView{index: r.index, models: maps.Clone(r.models), versions: maps.Clone(r.versions), deployments: maps.Clone(r.deployments)}
	for _, a := range r.allocs {
		v.allocs = append(v.allocs, a)
	}
	slices.SortFunc(v.allocs, func(a, b structs.Allocation) int { return strings.Compare(a.ID, b.ID) })
	return v, func() {}
}

type memView struct {
	index       uint64
	models      map[string]structs.Model
	versions    map[string]structs.ModelVersion
	deployments map[string]structs.Deployment
	allocs      []structs.Allocation
}

func (v *memView) Index() uint64 { return v.index }

func (v *memView) Model(name string) (*structs.Model, error) {
	m, ok := v.models[name]
	if !ok {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q not found", name)
	}
	return &m, nil
}

func (v *memView) Version(model string, n uint64) (*structs.ModelVersion, error) {
	mv, ok := v.versions[fmt.Sprintf("%s/%d", model, n)]
	if !ok {
		return nil, structs.Errorf(structs.CodeNotFound, "model %q has no version %d", model, n)
	}
	return &mv, nil
}

func (v *memView) Deployment(name string) (*structs.Deployment, error) {
	d, ok := v.deployments[name]
	if !ok {
		return nil, structs.Errorf(structs.CodeNotFound, "deployment %q not found", name)
	}
	return &d, nil
}

func (v *memView) Allocations() ([]*structs.Allocation, error) {
	out := make([]*structs.Allocation, len(v.allocs))
	for i := range v.allocs {
		a := v.allocs[i]
		out[i] = &a
	}
	return out, nil
}

// fakeBlobs makes every artifact available at "/blobs/<digest>".
type fakeBlobs struct {
	mu      sync.Mutex
	ensured []string // guarded by mu: digests asked for
}

func (b *fakeBlobs) Ensure(ctx context.Context, digest string, holders []string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ensured = append(b.ensured, digest)
	return "/blobs/" + digest, nil
}

// loaderOf returns a Loader that hands out models by artifact path, and
// fails for paths it does not know.
func loaderOf(models map[string]ml.Model) Loader {
	return func(format, path string, _ ml.LoadOptions) (ml.Model, error) {
		if m, ok := models[path]; ok {
			return m, nil
		}
		return nil, fmt.Errorf("%w: no model at %q (format %s)", ml.ErrBadModel, path, format)
	}
}

// testActorSystem returns a local actors.System, shut down when the test ends.
func testActorSystem(t testing.TB, node string) *actors.System {
	t.Helper()
	cfg := actors.DefaultConfig()
	cfg.NodeID = node
	sys, err := actors.NewSystem(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sys.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return sys
}

// routerFixture is a node "n1" with a registry, shard actors and a Router.
type routerFixture struct {
	sys     *actors.System
	reg     *memRegistry
	blobs   *fakeBlobs
	metrics *Metrics
	router  *Router
}

func newRouterFixture(t *testing.T, configure func(*RouterConfig)) *routerFixture {
	t.Helper()
	f := &routerFixture{sys: testActorSystem(t, "n1"), reg: newMemRegistry(), blobs: &fakeBlobs{}, metrics: newTestMetrics()}
	cfg := RouterConfig{
		NodeID:  "n1",
		System:  f.sys,
		View:    f.reg.view,
		Alive:   func(node string) bool { return node != "dead" },
		Metrics: f.metrics,
	}
	if configure != nil {
		configure(&cfg)
	}
	f.router = NewRouter(cfg)
	t.Cleanup(f.router.Close) // before the System shuts down
	return f
}

// deploy records model name with the given versions served by weight (and
// shadow), replicas each.
func (f *routerFixture) deploy(name string, weights map[uint64]int, shadow uint64, replicas int) {
	f.reg.putModel(structs.Model{Name: name})
	d := structs.Deployment{Name: name, Replicas: replicas, Traffic: structs.Traffic{Shadow: shadow}}
	for _, v := range slices.Sorted(maps.Keys(weights)) {
		d.Traffic.Versions = append(d.Traffic.Versions, structs.TrafficSplit{Version: v, Weight: weights[v]})
	}
	for _, v := range d.Traffic.ServedVersions() {
		f.reg.putVersion(structs.ModelVersion{Model: name, Version: v, Format: ml.FormatLinear, Digest: fmt.Sprintf("sha256:%s-%d", name, v)})
	}
	f.reg.putDeployment(d)
}

// replica records a running allocation of model version on n1 and spawns
// its shard actor serving m.
func (f *routerFixture) replica(t *testing.T, id, model string, version uint64, gen uint64, m ml.Model) structs.Allocation {
	t.Helper()
	a := structs.Allocation{ID: id, Deployment: model, Version: version, NodeID: "n1", State: structs.AllocRunning, CreateIndex: gen}
	view, release := f.reg.view()
	v, err := view.Version(model, version)
	d, derr := view.Deployment(model)
	release()
	if err != nil || derr != nil {
		t.Fatalf("replica of an unknown version: %v, %v", err, derr)
	}
	cfg := ShardConfig{
		Alloc: a, Version: *v, Batching: d.Batching, Blobs: f.blobs,
		Load:    loaderOf(map[string]ml.Model{"/blobs/" + v.Digest: m}),
		Workers: 2, QueueLen: 64,
	}
	if err := f.sys.Spawn(ShardRef(&a), NewShardFactory(cfg), actors.SpawnOptions{}); err != nil {
		t.Fatal(err)
	}
	f.reg.putAlloc(a)
	return a
}

func (f *routerFixture) resolve(t *testing.T, model string, sel Selector) *Target {
	t.Helper()
	target, err := f.router.Resolve(model, sel)
	if err != nil {
		t.Fatalf("Resolve(%q, %+v): %v", model, sel, err)
	}
	return target
}

func (f *routerFixture) predict(t *testing.T, target *Target, inputs ...ml.Tensor) ([]ml.Tensor, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.router.Predict(ctx, target, inputs)
}

func stopShard(t *testing.T, sys *actors.System, a structs.Allocation) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Stop(ctx, ShardRef(&a)); err != nil {
		t.Fatalf("stopping replica %s: %v", a.ID, err)
	}
}

func TestPickWeighted_Distribution(t *testing.T) {
	const draws = 10000
	tests := []struct {
		name    string
		weights []structs.TrafficSplit
	}{
		{name: "70/20/10", weights: []structs.TrafficSplit{{Version: 1, Weight: 70}, {Version: 2, Weight: 20}, {Version: 3, Weight: 10}}},
		{name: "even", weights: []structs.TrafficSplit{{Version: 4, Weight: 1}, {Version: 9, Weight: 1}}},
		{name: "zero weight", weights: []structs.TrafficSplit{{Version: 1, Weight: 0}, {Version: 2, Weight: 3}, {Version: 3, Weight: 1}}},
		{name: "one version", weights: []structs.TrafficSplit{{Version: 5, Weight: 10}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, keyed := range []bool{false, true} {
				counts := map[uint64]int{}
				for i := range draws {
					key := ""
					if keyed {
						key = fmt.Sprintf("user-%d", i)
					}
					counts[pickWeighted(tc.weights, key)]++
				}
				checkShares(t, keyed, tc.weights, counts, draws)
			}
		})
	}
}

func checkShares(t *testing.T, keyed bool, weights []structs.TrafficSplit, counts map[uint64]int, draws int) {
	t.Helper()
	total := 0
	for _, s := range weights {
		total += s.Weight
	}
	seen := 0
	for _, s := range weights {
		want := float64(s.Weight) / float64(total)
		got := float64(counts[s.Version]) / float64(draws)
		if math.Abs(got-want) > 0.02 || (s.Weight == 0 && counts[s.Version] != 0) {
			t.Errorf("keyed %v: version %d got %.3f of the draws, want %.3f ± 0.02", keyed, s.Version, got, want)
		}
		seen += counts[s.Version]
	}
	if seen != draws {
		t.Errorf("keyed %v: %d of %d draws went to versions outside the split: %v", keyed, draws-seen, draws, counts)
	}
}

func TestPickWeighted_SameKeySameVersion(t *testing.T) {
	weights := []structs.TrafficSplit{{Version: 1, Weight: 50}, {Version: 2, Weight: 50}}
	versions := map[uint64]bool{}
	for i := range 100 {
		key := fmt.Sprintf("session-%d", i)
		first := pickWeighted(weights, key)
		versions[first] = true
		for range 20 {
			if again := pickWeighted(weights, key); again != first {
				t.Fatalf("key %q went to version %d, then %d", key, first, again)
			}
		}
	}
	if len(versions) != 2 {
		t.Fatalf("100 keys all went to versions %v; the key is not spreading traffic", versions)
	}
}

func TestRouter_Resolve(t *testing.T) {
	f := newRouterFixture(t, nil)
	f.deploy("m", map[uint64]int{1: 90, 2: 10}, 0, 1)
	f.reg.putModel(structs.Model{Name: "m", Aliases: structs.VersionMap{"champion": 1, "challenger": 2, "retired": 3}})
	f.reg.putVersion(structs.ModelVersion{Model: "m", Version: 3, Format: ml.FormatLinear})
	f.reg.putAlloc(structs.Allocation{ID: "a1", Deployment: "m", Version: 1, NodeID: "n1", State: structs.AllocRunning})
	f.reg.putAlloc(structs.Allocation{ID: "a2", Deployment: "m", Version: 2, NodeID: "n1", State: structs.AllocPending})
	f.reg.putModel(structs.Model{Name: "bare"})
	f.deploy("lost", map[uint64]int{1: 1}, 0, 1)
	f.reg.putAlloc(structs.Allocation{ID: "l1", Deployment: "lost", Version: 1, NodeID: "dead", State: structs.AllocRunning})

	tests := []struct {
		name        string
		model       string
		sel         Selector
		wantCode    string // "" for success
		wantMsg     string
		wantVersion uint64
	}{
		{name: "by version", model: "m", sel: Selector{Version: 1}, wantVersion: 1},
		{name: "by alias", model: "m", sel: Selector{Alias: "champion"}, wantVersion: 1},
		{name: "alias and version agreeing", model: "m", sel: Selector{Version: 1, Alias: "champion"}, wantVersion: 1},
		{name: "unknown model", model: "nope", wantCode: structs.CodeNotFound},
		{name: "model without deployment", model: "bare", wantCode: structs.CodeNotDeployed, wantMsg: "not deployed"},
		{name: "version not served", model: "m", sel: Selector{Version: 3}, wantCode: structs.CodeNotDeployed, wantMsg: "not deployed"},
		{name: "alias of a version not served", model: "m", sel: Selector{Alias: "retired"}, wantCode: structs.CodeNotDeployed},
		{name: "version that does not exist", model: "m", sel: Selector{Version: 99}, wantCode: structs.CodeNotFound},
		{name: "unknown alias", model: "m", sel: Selector{Alias: "nobody"}, wantCode: structs.CodeNotFound, wantMsg: "alias"},
		{name: "alias and version disagreeing", model: "m", sel: Selector{Version: 1, Alias: "challenger"}, wantCode: structs.CodeInvalid},
		{name: "no running replica", model: "m", sel: Selector{Version: 2}, wantCode: structs.CodeUnavailable},
		{name: "replica on a dead node", model: "lost", wantCode: structs.CodeUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target, err := f.router.Resolve(tc.model, tc.sel)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if target.Version.Version != tc.wantVersion || len(target.replicas) != 1 || target.replicas[0].ID != "a1" {
					t.Fatalf("Resolve = version %d on %v, want version %d on a1", target.Version.Version, target.replicas, tc.wantVersion)
				}
				return
			}
			var ce *structs.CodedError
			if !errors.As(err, &ce) || ce.Code != tc.wantCode || !strings.Contains(ce.Message, tc.wantMsg) {
				t.Fatalf("Resolve = %v, %v; want a %q error mentioning %q", target, err, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestRouter_ResolveSeesRegistryChanges(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cached %v", cached), func(t *testing.T) {
			var f *routerFixture
			f = newRouterFixture(t, func(cfg *RouterConfig) {
				if cached {
					cfg.Index = func() uint64 { return f.reg.Index() }
				}
			})
			f.deploy("m", map[uint64]int{1: 1}, 0, 1)
			f.reg.putAlloc(structs.Allocation{ID: "a1", Deployment: "m", Version: 1, NodeID: "n1", State: structs.AllocPending})
			if _, err := f.router.Resolve("m", Selector{}); structs.ErrorCode(err) != structs.CodeUnavailable {
				t.Fatalf("Resolve with a pending replica = %v, want unavailable", err)
			}
			f.reg.putAlloc(structs.Allocation{ID: "a1", Deployment: "m", Version: 1, NodeID: "n1", State: structs.AllocRunning})
			if target := f.resolve(t, "m", Selector{}); len(target.replicas) != 1 {
				t.Fatalf("replicas after the allocation runs: %v", target.replicas)
			}
			f.reg.deleteAlloc("a1")
			if _, err := f.router.Resolve("m", Selector{}); structs.ErrorCode(err) != structs.CodeUnavailable {
				t.Fatalf("Resolve after the allocation went = %v, want unavailable", err)
			}
		})
	}
}

func TestRouter_Predict(t *testing.T) {
	f := newRouterFixture(t, nil)
	f.deploy("m", map[uint64]int{1: 1}, 0, 2)
	m := newSumModel(false)
	f.replica(t, "r1", "m", 1, 10, m)

	out, err := f.predict(t, f.resolve(t, "m", Selector{}), ml.Tensor{Name: "x", Shape: []int{2, 2}, Data: []float64{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Name != "y" || !slices.Equal(out[0].Shape, []int{2}) || !slices.Equal(out[0].Data, []float64{3, 7}) {
		t.Fatalf("Predict = %+v, want y [3 7]", out)
	}
	f.blobs.mu.Lock()
	ensured := slices.Clone(f.blobs.ensured)
	f.blobs.mu.Unlock()
	if !slices.Equal(ensured, []string{"sha256:m-1"}) {
		t.Fatalf("the shard fetched artifacts %v, want its version's", ensured)
	}
}

func TestRouter_RetriesOnAnotherReplica(t *testing.T) {
	in := matrix(1, 1, 3)

	t.Run("a stopped replica", func(t *testing.T) {
		f := newRouterFixture(t, nil)
		f.deploy("m", map[uint64]int{1: 1}, 0, 2)
		m1, m2 := newSumModel(false), newSumModel(false)
		r1 := f.replica(t, "r1", "m", 1, 10, m1)
		r2 := f.replica(t, "r2", "m", 1, 11, m2)
		target := f.resolve(t, "m", Selector{})
		stopShard(t, f.sys, r1)
		// With r2 marked down, r1 is the first choice; its failure sends the
		// request on to r2 all the same.
		f.router.mu.Lock()
		f.router.down[r2.ID] = time.Now().Add(time.Hour)
		f.router.mu.Unlock()

		out, err := f.predict(t, target, in)
		if err != nil {
			t.Fatalf("Predict with one replica stopped: %v", err)
		}
		if !slices.Equal(out[0].Data, rowSums([]ml.Tensor{in})) {
			t.Fatalf("Predict = %v", out)
		}
		if calls := m2.callRows(); len(calls) != 1 {
			t.Fatalf("the live replica's model was called %d times, want once", len(calls))
		}
		f.router.mu.Lock()
		downUntil := f.router.down[r1.ID]
		f.router.mu.Unlock()
		if !downUntil.After(time.Now()) {
			t.Fatalf("the stopped replica is not marked down (until %v)", downUntil)
		}
	})

	t.Run("every replica stopped", func(t *testing.T) {
		f := newRouterFixture(t, nil)
		f.deploy("m", map[uint64]int{1: 1}, 0, 2)
		r1 := f.replica(t, "r1", "m", 1, 10, newSumModel(false))
		r2 := f.replica(t, "r2", "m", 1, 11, newSumModel(false))
		target := f.resolve(t, "m", Selector{})
		stopShard(t, f.sys, r1)
		stopShard(t, f.sys, r2)
		if _, err := f.predict(t, target, in); !errors.Is(err, actors.ErrNotFound) {
			t.Fatalf("Predict with every replica stopped = %v, want actors.ErrNotFound", err)
		}
	})

	t.Run("bad input is not retried", func(t *testing.T) {
		f := newRouterFixture(t, nil)
		f.deploy("m", map[uint64]int{1: 1}, 0, 2)
		m1, m2 := newSumModel(false), newSumModel(false)
		f.replica(t, "r1", "m", 1, 10, m1)
		f.replica(t, "r2", "m", 1, 11, m2)
		bad := matrix(1, 1, 3)
		bad.Data[0] = badMarker
		if _, err := f.predict(t, f.resolve(t, "m", Selector{}), bad); structs.ErrorCode(err) != structs.CodeInvalid {
			t.Fatalf("Predict of bad input = %v (code %q), want %q", err, structs.ErrorCode(err), structs.CodeInvalid)
		}
		if calls := len(m1.callRows()) + len(m2.callRows()); calls != 1 {
			t.Fatalf("bad input reached the models %d times, want once", calls)
		}
	})
}

func TestRouter_Pick(t *testing.T) {
	r1 := &structs.Allocation{ID: "r1", NodeID: "n2"}
	r2 := &structs.Allocation{ID: "r2", NodeID: "n1"}
	r3 := &structs.Allocation{ID: "r3", NodeID: "n3"}
	tests := []struct {
		name     string
		replicas []*structs.Allocation
		inFlight map[string]int64
		down     []string
		except   string
		want     string // every pick, over many draws; "" for nil
	}{
		{name: "fewer in flight", replicas: []*structs.Allocation{r1, r3}, inFlight: map[string]int64{"r1": 100}, want: "r3"},
		{name: "down replicas avoided", replicas: []*structs.Allocation{r1, r3}, inFlight: map[string]int64{"r1": 100}, down: []string{"r3"}, want: "r1"},
		{name: "all down: still one", replicas: []*structs.Allocation{r1, r3}, inFlight: map[string]int64{"r1": 100}, down: []string{"r1", "r3"}, want: "r3"},
		{name: "except the failed one", replicas: []*structs.Allocation{r1, r3}, inFlight: map[string]int64{"r1": 100}, except: "r3", want: "r1"},
		{name: "only the failed one left", replicas: []*structs.Allocation{r1}, except: "r1", want: ""},
		{name: "local replica while not much busier", replicas: []*structs.Allocation{r1, r2, r3}, inFlight: map[string]int64{"r2": localSlack}, want: "r2"},
		{name: "remote replica when the local one is swamped", replicas: []*structs.Allocation{r1, r2}, inFlight: map[string]int64{"r2": localSlack + 1}, want: "r1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newRouterFixture(t, nil)
			r := f.router
			r.mu.Lock()
			for id, n := range tc.inFlight {
				r.counterLocked(id).Store(n)
			}
			for _, id := range tc.down {
				r.down[id] = time.Now().Add(time.Hour)
			}
			r.mu.Unlock()
			for range 200 {
				got := r.pick(tc.replicas, tc.except)
				if (got == nil) != (tc.want == "") || (got != nil && got.ID != tc.want) {
					t.Fatalf("pick = %v, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestRouter_Shadow(t *testing.T) {
	t.Run("the caller does not wait for the shadow", func(t *testing.T) {
		f := newRouterFixture(t, nil)
		f.deploy("m", map[uint64]int{1: 1}, 2, 1)
		live, shadow := newSumModel(false), newSumModel(true)
		t.Cleanup(shadow.open) // before the System's shutdown
		f.replica(t, "live", "m", 1, 10, live)
		sa := f.replica(t, "shadow", "m", 2, 11, shadow)

		target := f.resolve(t, "m", Selector{})
		if target.Version.Version != 1 || target.shadow == nil || target.shadow.Version.Version != 2 {
			t.Fatalf("Resolve = version %d with shadow %v, want 1 with shadow 2", target.Version.Version, target.shadow)
		}
		in := matrix(3, 2, 2)
		type answer struct {
			out []ml.Tensor
			err error
		}
		answered := make(chan answer, 1)
		go func() {
			out, err := f.router.Predict(context.Background(), target, []ml.Tensor{in})
			answered <- answer{out, err}
		}()
		select {
		case a := <-answered:
			if a.err != nil || !slices.Equal(a.out[0].Data, rowSums([]ml.Tensor{in})) {
				t.Fatalf("Predict = %v, %v", a.out, a.err)
			}
		case <-time.After(5 * time.Second):
			shadow.open()
			t.Fatal("Predict waited for the shadow version")
		}
		// The shadow model holds its copy: the caller had its answer first.
		if rows := shadow.waitEntered(t); rows != 2 {
			t.Fatalf("the shadow got %d rows, want the request's 2", rows)
		}
		testutil.Until(t, 5*time.Second, "", func() bool { return f.router.InFlight(sa.ID) == 1 })
		if s := statsFor(f.metrics, "m", 2); s.Requests != 0 {
			t.Fatalf("the shadow request was recorded (%+v) before its model answered", s)
		}
		shadow.open()
		f.router.Close()
		if s := statsFor(f.metrics, "m", 2); s.Requests != 1 || s.Errors != 0 {
			t.Fatalf("shadow version stats %+v, want 1 request, no error", s)
		}
		if s := statsFor(f.metrics, "m", 1); s.Requests != 1 {
			t.Fatalf("live version stats %+v, want 1 request", s)
		}
	})

	t.Run("copies beyond MaxShadow are dropped", func(t *testing.T) {
		f := newRouterFixture(t, func(cfg *RouterConfig) { cfg.MaxShadow = 1 })
		f.deploy("m", map[uint64]int{1: 1}, 2, 1)
		shadow := newSumModel(true)
		t.Cleanup(shadow.open)
		f.replica(t, "live", "m", 1, 10, newSumModel(false))
		f.replica(t, "shadow", "m", 2, 11, shadow)
		target := f.resolve(t, "m", Selector{})
		for i := range 3 {
			if _, err := f.predict(t, target, matrix(i, 1, 2)); err != nil {
				t.Fatal(err)
			}
		}
		shadow.open()
		f.router.Close()
		if calls := shadow.callRows(); len(calls) != 1 {
			t.Fatalf("the shadow model was called %d times with one slot, want 1", len(calls))
		}
		if s := statsFor(f.metrics, "m", 2); s.Requests != 1 {
			t.Fatalf("shadow version stats %+v, want 1 request", s)
		}
	})
}

// statsFor returns the stats of one version; zero when it has none yet.
func statsFor(m *Metrics, model string, version uint64) VersionStats {
	for _, s := range m.Stats(model) {
		if s.Version == version {
			return s
		}
	}
	return VersionStats{Version: version}
}

func TestRouter_PredictRecordsMetrics(t *testing.T) {
	f := newRouterFixture(t, nil)
	f.deploy("m", map[uint64]int{1: 1}, 0, 1)
	f.deploy("other", map[uint64]int{4: 1}, 0, 1)
	f.replica(t, "r1", "m", 1, 10, newSumModel(false))
	f.replica(t, "o1", "other", 4, 11, newSumModel(false))

	target := f.resolve(t, "m", Selector{})
	for i := range 3 {
		if _, err := f.predict(t, target, matrix(i, 1, 2)); err != nil {
			t.Fatal(err)
		}
	}
	bad := matrix(9, 1, 2)
	bad.Data[1] = badMarker
	if _, err := f.predict(t, target, bad); err == nil {
		t.Fatal("Predict of bad input succeeded")
	}
	if _, err := f.predict(t, f.resolve(t, "other", Selector{}), matrix(1, 1, 2)); err != nil {
		t.Fatal(err)
	}

	stats := f.metrics.Stats("m")
	if len(stats) != 1 || stats[0].Version != 1 || stats[0].Requests != 4 || stats[0].Errors != 1 || stats[0].Count != 4 {
		t.Fatalf("Stats(m) = %+v, want version 1 with 4 requests and 1 error", stats)
	}
	if s := statsFor(f.metrics, "other", 4); s.Requests != 1 || s.Errors != 0 {
		t.Fatalf("Stats(other) v4 = %+v, want 1 request", s)
	}
}

// sizes returns how many in-flight counters, down marks and outboxes the
// router holds.
func (f *routerFixture) sizes() (inFlight, down, outboxes int) {
	r := f.router
	r.mu.Lock()
	inFlight, down = len(r.inFlight), len(r.down)
	r.mu.Unlock()
	r.outboxMu.Lock()
	outboxes = len(r.outboxes)
	r.outboxMu.Unlock()
	return inFlight, down, outboxes
}

func TestRouter_ForgetsAllocationsThatAreGone(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cached %v", cached), func(t *testing.T) {
			var f *routerFixture
			f = newRouterFixture(t, func(cfg *RouterConfig) {
				if cached {
					cfg.Index = func() uint64 { return f.reg.Index() }
				}
			})
			f.deploy("m", map[uint64]int{1: 1}, 0, 2)
			f.replica(t, "r1", "m", 1, 10, newSumModel(false))
			f.replica(t, "r2", "m", 1, 11, newSumModel(false))
			// A remote replica of a model nobody asks for again.
			f.deploy("other", map[uint64]int{1: 1}, 0, 1)
			o1 := structs.Allocation{ID: "o1", Deployment: "other", Version: 1, NodeID: "n2", State: structs.AllocRunning, CreateIndex: 12}
			f.reg.putAlloc(o1)
			f.resolve(t, "other", Selector{})
			f.router.outboxFor(&o1, 1)
			for i := range 10 {
				if _, err := f.predict(t, f.resolve(t, "m", Selector{}), matrix(i, 1, 2)); err != nil {
					t.Fatal(err)
				}
			}
			f.router.mu.Lock()
			f.router.down["r1"] = time.Now().Add(time.Hour)
			f.router.mu.Unlock()
			if inFlight, down, outboxes := f.sizes(); inFlight != 2 || down != 1 || outboxes != 1 {
				t.Fatalf("before: %d counters, %d down marks, %d outboxes; want 2, 1, 1", inFlight, down, outboxes)
			}

			// The replicas are replaced: r3 takes over, marked down once but
			// long since back; r4 is still avoided.
			f.replica(t, "r3", "m", 1, 13, newSumModel(false))
			f.replica(t, "r4", "m", 1, 14, newSumModel(false))
			f.router.mu.Lock()
			f.router.down["r3"] = time.Now().Add(-time.Second)
			f.router.down["r4"] = time.Now().Add(time.Hour)
			f.router.mu.Unlock()
			f.reg.deleteAlloc("r1")
			f.reg.deleteAlloc("r2")
			f.reg.deleteAlloc("o1")
			target := f.resolve(t, "m", Selector{})
			if len(target.replicas) != 2 {
				t.Fatalf("replicas after the change: %v, want r3 and r4", target.replicas)
			}

			f.router.mu.Lock()
			counters := slices.Sorted(maps.Keys(f.router.inFlight))
			down := slices.Sorted(maps.Keys(f.router.down))
			f.router.mu.Unlock()
			if len(counters) != 0 {
				t.Errorf("in-flight counters of %v remain, want none: r1 and r2 are gone, r3 and r4 not called yet", counters)
			}
			if !slices.Equal(down, []string{"r4"}) {
				t.Errorf("down marks of %v remain, want r4's alone", down)
			}
			if _, _, outboxes := f.sizes(); outboxes != 0 {
				t.Errorf("%d outboxes remain, want none: o1 is gone", outboxes)
			}
		})
	}
}

func TestRouter_ForgetsDeletedVersionsAndModels(t *testing.T) {
	var f *routerFixture
	f = newRouterFixture(t, func(cfg *RouterConfig) { cfg.Index = func() uint64 { return f.reg.Index() } })
	f.deploy("m", map[uint64]int{1: 1, 2: 1, 3: 1}, 0, 1)
	f.replica(t, "r1", "m", 1, 10, newSumModel(false))
	f.replica(t, "r2", "m", 2, 12, newSumModel(false))
	f.replica(t, "r3", "m", 3, 13, newSumModel(false))
	f.deploy("other", map[uint64]int{4: 1}, 0, 1)
	f.replica(t, "o4", "other", 4, 14, newSumModel(false))
	for _, v := range []uint64{1, 2, 3} {
		if _, err := f.predict(t, f.resolve(t, "m", Selector{Version: v}), matrix(1, 1, 2)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.predict(t, f.resolve(t, "other", Selector{}), matrix(1, 1, 2)); err != nil {
		t.Fatal(err)
	}

	// Version 2 takes all the traffic; version 1 is deleted, version 3 only
	// leaves the deployment.
	f.reg.putDeployment(structs.Deployment{Name: "m", Replicas: 1, Traffic: structs.Traffic{Versions: []structs.TrafficSplit{{Version: 2, Weight: 1}}}})
	f.reg.deleteAlloc("r1")
	f.reg.deleteAlloc("r3")
	f.reg.change(func() { delete(f.reg.versions, "m/1") })
	f.resolve(t, "m", Selector{})
	var versions []uint64
	for _, s := range f.metrics.Stats("m") {
		versions = append(versions, s.Version)
	}
	if !slices.Equal(versions, []uint64{2, 3}) {
		t.Fatalf("versions of m with metrics: %v, want [2 3]: 1 was deleted, 3 still exists", versions)
	}
	if s := statsFor(f.metrics, "other", 4); s.Requests != 1 {
		t.Fatalf("Stats(other) v4 = %+v, want its request kept", s)
	}

	// The other model goes altogether; the next request to m sweeps it.
	f.reg.change(func() {
		delete(f.reg.models, "other")
		delete(f.reg.versions, "other/4")
		delete(f.reg.deployments, "other")
		delete(f.reg.allocs, "o4")
	})
	f.resolve(t, "m", Selector{})
	if s := f.metrics.Stats("other"); len(s) != 0 {
		t.Fatalf("Stats(other) after it was deleted = %+v, want none", s)
	}
	f.router.routesMu.Lock()
	_, cachedOther := f.router.routes["other"]
	f.router.routesMu.Unlock()
	if cachedOther {
		t.Fatal("the routes of a deleted model are still cached")
	}
}

// A model the registry does not have is looked up once per registry
// change: later requests for it are answered from the negative cache, and
// the model is found as soon as the registry has it.
func TestRouter_CachesUnknownModels(t *testing.T) {
	var f *routerFixture
	f = newRouterFixture(t, func(cfg *RouterConfig) { cfg.Index = func() uint64 { return f.reg.Index() } })
	f.deploy("m", map[uint64]int{1: 1}, 0, 1)
	before := f.reg.views.Load()
	for range 5 {
		if _, err := f.router.Resolve("nope", Selector{}); structs.ErrorCode(err) != structs.CodeNotFound {
			t.Fatalf("Resolve of an unknown model = %v, want not_found", err)
		}
	}
	if n := f.reg.views.Load() - before; n != 1 {
		t.Fatalf("5 requests for an unknown model opened %d registry views, want 1", n)
	}
	f.deploy("nope", map[uint64]int{1: 1}, 0, 1)
	if _, err := f.router.Resolve("nope", Selector{}); structs.ErrorCode(err) == structs.CodeNotFound {
		t.Fatalf("Resolve after the model was created still says not found: %v", err)
	}
}

// A prediction gives up at its deployment's timeout_ms, or at the router's
// PredictTimeout when the deployment sets none, with unavailable naming it.
func TestRouter_PredictTimeout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		timeoutMS int64
		router    time.Duration
		says      string
	}{
		{"the deployment's timeout", 20, time.Hour, "20ms"},
		{"the router's default", 0, 30 * time.Millisecond, "30ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRouterFixture(t, func(cfg *RouterConfig) { cfg.PredictTimeout = tc.router })
			f.deploy("m", map[uint64]int{1: 1}, 0, 1)
			view, release := f.reg.view()
			d, _ := view.Deployment("m")
			release()
			d.TimeoutMS = tc.timeoutMS
			f.reg.putDeployment(*d)
			m := newSumModel(true) // holds every call until opened
			t.Cleanup(m.open)
			f.replica(t, "r1", "m", 1, 10, m)
			_, err := f.predict(t, f.resolve(t, "m", Selector{}), ml.Tensor{Name: "x", Shape: []int{1, 2}, Data: []float64{1, 2}})
			if structs.ErrorCode(err) != structs.CodeUnavailable || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Predict on a model that never answers = %v, want unavailable naming %s", err, tc.says)
			}
		})
	}
}
