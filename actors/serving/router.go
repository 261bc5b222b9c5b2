package serving

import (
	"context"
	"errors"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// RouterConfig wires a node's ingress router.
type RouterConfig struct {
	// NodeID is this node: a replica here is preferred while it is not
	// much busier than the one power-of-two-choices picks, which saves
	// the network hop.
	NodeID string
	// Local, when set, lets predictions reach replicas on this node without
	// their mailboxes.
	Local  *LocalShards
	System *actors.System
	View   ViewFunc
	// Index returns the local registry's index of the last change to
	// serving state (raftfsm.FSM.Index of raftfsm.ServingTables); routing facts read from a
	// view at or after it are still current. Nil: no cache.
	Index func() uint64
	// Alive reports whether a node is up, as gossip sees it.
	Alive   func(nodeID string) bool
	Metrics *Metrics
	Logger  hclog.Logger
	// DownFor is how long a replica that failed to answer is avoided
	// (default 2s).
	DownFor time.Duration
	// MaxShadow bounds shadow requests in flight; beyond it copies are
	// dropped, so a slow shadow version cannot pile up work (default 256).
	MaxShadow int
	// PredictTimeout bounds one prediction on the server when its
	// deployment sets no timeout_ms (default 30s).
	PredictTimeout time.Duration
}

// Router answers predictions on any node: it picks the version and the
// replica and calls the replica's shard actor, wherever it runs.
type Router struct {
	cfg RouterConfig
	log hclog.Logger

	mu       sync.Mutex
	inFlight map[string]*atomic.Int64 // guarded by mu (the map); by alloc ID
	down     map[string]time.Time     // guarded by mu: alloc ID -> avoided until

	// sweepMu serializes sweeps, so that one from an older view never
	// drops what a newer one kept.
	sweepMu sync.Mutex
	swept   atomic.Uint64 // written under sweepMu: the view index last swept

	outboxMu sync.Mutex
	outboxes map[string]*outbox // guarded by outboxMu: by alloc ID

	routesMu sync.Mutex
	routes   map[string]*modelRoutes // guarded by routesMu: by model name
	// unknown caches models the registry does not have, with the index it
	// said so at, so a stream of requests for a name that does not exist
	// reads the registry once per change, not once each. At most
	// maxUnknownModels names; past that it starts over.
	unknown map[string]uint64 // guarded by routesMu

	shadowSlots chan struct{}
	wg          sync.WaitGroup // shadow requests and outbox flushes
}

// modelRoutes is what the registry says about routing one model, as of one
// applied index: read once per change to serving state, not once per
// request, and not again for registry writes that do not touch it.
type modelRoutes struct {
	index    uint64
	model    *structs.Model
	dep      *structs.Deployment // nil when the model is not deployed
	versions map[uint64]*structs.ModelVersion
	allocs   map[uint64][]*structs.Allocation // by version, every state
}

// NewRouter returns a Router.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.DownFor <= 0 {
		cfg.DownFor = 2 * time.Second
	}
	if cfg.MaxShadow <= 0 {
		cfg.MaxShadow = 256
	}
	if cfg.PredictTimeout <= 0 {
		cfg.PredictTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Router{
		cfg: cfg, log: cfg.Logger.Named("router"),
		inFlight: map[string]*atomic.Int64{}, down: map[string]time.Time{}, routes: map[string]*modelRoutes{},
		unknown:     map[string]uint64{},
		outboxes:    map[string]*outbox{},
		shadowSlots: make(chan struct{}, cfg.MaxShadow),
	}
}

// Target is where a request goes: the version chosen and its running
// replicas, as of one registry view.
type Target struct {
	Deployment *structs.Deployment
	Version    *structs.ModelVersion
	replicas   []*structs.Allocation
	shadow     *Target
}

// Selector says which version a request wants; the zero value means "by the
// deployment's traffic weights".
type Selector struct {
	Version uint64
	Alias   string
	// Key makes the weighted choice sticky: requests with the same key go to
	// the same version while the weights stay the same.
	Key string
}

// Resolve picks the version and its replicas for a request to model. Errors
// are *structs.CodedError: not_found for an unknown model, version or alias,
// not_deployed (409) for a model or version that is not deployed,
// unavailable when no replica of the version runs yet.
func (r *Router) Resolve(model string, sel Selector) (*Target, error) {
	routes, err := r.routesFor(model)
	if err != nil {
		return nil, err
	}
	d := routes.dep
	if d == nil {
		return nil, structs.Errorf(structs.CodeNotDeployed, "model %q is not deployed; deploy it with PUT /v1/deployments/%s", model, model)
	}
	version := sel.Version
	if sel.Alias != "" {
		v, ok := routes.model.Aliases[sel.Alias]
		if !ok {
			return nil, structs.Errorf(structs.CodeNotFound, "model %q has no alias %q", model, sel.Alias)
		}
		if version != 0 && version != v {
			return nil, structs.Errorf(structs.CodeInvalid, "version %d and alias %q (version %d) disagree; give one", version, sel.Alias, v)
		}
		version = v
	}
	if version == 0 {
		version = pickWeighted(d.Traffic.Versions, sel.Key)
	}
	t, err := r.target(routes, version)
	if err != nil {
		return nil, err
	}
	if d.Traffic.Shadow != 0 && d.Traffic.Shadow != version {
		if st, err := r.target(routes, d.Traffic.Shadow); err == nil {
			t.shadow = st
		}
	}
	return t, nil
}

// maxUnknownModels bounds Router.unknown.
const maxUnknownModels = 4096

func unknownModel(name string) error {
	return structs.Errorf(structs.CodeNotFound, "model %q not found", name)
}

// routesFor returns the routing facts of model, from the cache while the
// registry has not changed.
func (r *Router) routesFor(model string) (*modelRoutes, error) {
	if r.cfg.Index != nil {
		idx := r.cfg.Index()
		r.routesMu.Lock()
		cached := r.routes[model]
		missing, isUnknown := r.unknown[model]
		r.routesMu.Unlock()
		if cached != nil && cached.index >= idx {
			return cached, nil
		}
		if isUnknown && missing >= idx {
			return nil, unknownModel(model)
		}
	}
	view, release := r.cfg.View()
	defer release()
	r.sweep(view)
	m, err := view.Model(model)
	if structs.ErrorCode(err) == structs.CodeNotFound {
		r.routesMu.Lock()
		if len(r.unknown) >= maxUnknownModels {
			clear(r.unknown)
		}
		if r.unknown[model] < view.Index() {
			r.unknown[model] = view.Index()
		}
		r.routesMu.Unlock()
		return nil, unknownModel(model)
	}
	if err != nil {
		return nil, err
	}
	routes := &modelRoutes{index: view.Index(), model: m, versions: map[uint64]*structs.ModelVersion{}, allocs: map[uint64][]*structs.Allocation{}}
	d, err := view.Deployment(model)
	switch {
	case err == nil:
		routes.dep = d
		for _, v := range d.Traffic.ServedVersions() {
			if mv, err := view.Version(model, v); err == nil {
				routes.versions[v] = mv
			}
		}
		allocs, err := view.Allocations()
		if err != nil {
			return nil, err
		}
		for _, a := range allocs {
			if a.Deployment == model {
				routes.allocs[a.Version] = append(routes.allocs[a.Version], a)
			}
		}
	case structs.ErrorCode(err) != structs.CodeNotFound:
		return nil, err
	}
	r.routesMu.Lock()
	if old := r.routes[model]; old == nil || old.index <= routes.index {
		r.routes[model] = routes
	}
	r.routesMu.Unlock()
	r.pruneOutboxes(model, routes)
	return routes, nil
}

func (r *Router) target(routes *modelRoutes, version uint64) (*Target, error) {
	d := routes.dep
	v, served := routes.versions[version]
	if !served {
		if !slices.Contains(d.Traffic.ServedVersions(), version) && r.versionExists(d.Name, version) {
			return nil, structs.Errorf(structs.CodeNotDeployed, "version %d of model %q is not deployed (the deployment serves %v)", version, d.Name, d.Traffic.ServedVersions())
		}
		return nil, structs.Errorf(structs.CodeNotFound, "model %q has no version %d", d.Name, version)
	}
	t := &Target{Deployment: d, Version: v}
	placed := len(routes.allocs[version])
	for _, a := range routes.allocs[version] {
		if a.State == structs.AllocRunning && r.cfg.Alive(a.NodeID) {
			t.replicas = append(t.replicas, a)
		}
	}
	if len(t.replicas) == 0 {
		return nil, structs.Errorf(structs.CodeUnavailable, "no replica of model %q version %d is running yet (%d placed of %d)", d.Name, version, placed, d.Replicas)
	}
	return t, nil
}

func (r *Router) versionExists(model string, version uint64) bool {
	view, release := r.cfg.View()
	defer release()
	_, err := view.Version(model, version)
	return err == nil
}

// pickWeighted chooses a version by weight: by a hash of key when one is
// given, so the same key keeps its version, else at random.
func pickWeighted(splits []structs.TrafficSplit, key string) uint64 {
	total := 0
	for _, s := range splits {
		total += s.Weight
	}
	var n int
	if key != "" {
		h := fnv.New64a()
		h.Write([]byte(key))
		n = int(h.Sum64() % uint64(total))
	} else {
		n = rand.IntN(total)
	}
	for _, s := range splits {
		if n < s.Weight {
			return s.Version
		}
		n -= s.Weight
	}
	return splits[len(splits)-1].Version
}

// Predict scores inputs on one of t's replicas, retrying once on another
// when the first is unreachable, busy or gone, and sends a copy to the
// shadow version without waiting for it. It records the request in the
// version's metrics. It gives up after the deployment's timeout_ms
// (RouterConfig.PredictTimeout when that is 0) with unavailable.
func (r *Router) Predict(ctx context.Context, t *Target, inputs []ml.Tensor) ([]ml.Tensor, error) {
	if t.shadow != nil {
		r.sendShadow(t.shadow, inputs)
	}
	timeout := r.cfg.PredictTimeout
	if ms := t.Deployment.TimeoutMS; ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	start := time.Now()
	deadline := start.Add(timeout)
	out, err := r.call(ctx, t, inputs, deadline)
	if err != nil && !time.Now().Before(deadline) {
		err = structs.Errorf(structs.CodeUnavailable, "serving: the prediction did not finish within the deployment's timeout of %s", timeout)
	}
	r.cfg.Metrics.Observe(t.Deployment.Name, t.Version.Version, time.Since(start), err)
	return out, err
}

func (r *Router) call(ctx context.Context, t *Target, inputs []ml.Tensor, deadline time.Time) ([]ml.Tensor, error) {
	first := r.pick(t.replicas, "")
	out, err := r.ask(ctx, first, t.Deployment.Batching.MaxBatch, inputs, deadline)
	if err == nil || !retryable(err) || ctx.Err() != nil || !time.Now().Before(deadline) {
		return out, err
	}
	second := r.pick(t.replicas, first.ID)
	if second == nil {
		return nil, err
	}
	r.log.Debug("retrying on another replica", "failed", first.ID, "retry", second.ID, "error", err)
	return r.ask(ctx, second, t.Deployment.Batching.MaxBatch, inputs, deadline)
}

// pick chooses a replica by power of two choices on this node's in-flight
// counts, avoiding except and replicas marked down (unless nothing else is
// left). nil when only except remains.
func (r *Router) pick(replicas []*structs.Allocation, except string) *structs.Allocation {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var up, all []*structs.Allocation
	for _, a := range replicas {
		if a.ID == except {
			continue
		}
		all = append(all, a)
		if now.After(r.down[a.ID]) {
			up = append(up, a)
		}
	}
	if len(up) == 0 {
		up = all
	}
	switch len(up) {
	case 0:
		return nil
	case 1:
		return up[0]
	}
	i := rand.IntN(len(up))
	j := rand.IntN(len(up) - 1)
	if j >= i {
		j++
	}
	a, b := up[i], up[j]
	if r.counterLocked(b.ID).Load() < r.counterLocked(a.ID).Load() {
		a = b
	}
	if r.cfg.NodeID != "" && a.NodeID != r.cfg.NodeID {
		for _, l := range up {
			if l.NodeID == r.cfg.NodeID && r.counterLocked(l.ID).Load() <= r.counterLocked(a.ID).Load()+localSlack {
				return l
			}
		}
	}
	return a
}

// localSlack is how many more requests in flight a local replica may have
// than the remote one power-of-two-choices picked, and still be preferred.
const localSlack = 8

func (r *Router) counterLocked(id string) *atomic.Int64 {
	c := r.inFlight[id]
	if c == nil {
		c = new(atomic.Int64)
		r.inFlight[id] = c
	}
	return c
}

func (r *Router) ask(ctx context.Context, a *structs.Allocation, maxBatch int, inputs []ml.Tensor, deadline time.Time) ([]ml.Tensor, error) {
	r.mu.Lock()
	c := r.counterLocked(a.ID)
	r.mu.Unlock()
	c.Add(1)
	var (
		out []ml.Tensor
		err error
	)
	if b := r.localBatcher(a); b != nil {
		var p *pending
		if p, err = b.submit(ctx, inputs); err == nil {
			var reply any
			if reply, err = p.waitUntil(ctx, deadline); err == nil {
				out = reply.(*PredictReply).Outputs
			}
		} else {
			err = codedError(err)
		}
	} else {
		out, err = r.askRemote(ctx, a, maxBatch, inputs, deadline)
	}
	c.Add(-1)
	if err != nil {
		err = wireError(err)
		if markDown(err) {
			r.mu.Lock()
			r.down[a.ID] = time.Now().Add(r.cfg.DownFor)
			r.mu.Unlock()
		}
		return nil, err
	}
	return out, nil
}

// askRemote asks a replica on another node, through its outbox when it
// batches, the deadline carried by the context: the transport sends what is
// left of it to the replica's node.
func (r *Router) askRemote(ctx context.Context, a *structs.Allocation, maxBatch int, inputs []ml.Tensor, deadline time.Time) ([]ml.Tensor, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if ob := r.outboxFor(a, maxBatch); ob != nil {
		return ob.send(ctx, inputs)
	}
	reply, err := r.cfg.System.Ask(ctx, ShardRef(a), &PredictRequest{Inputs: inputs})
	if err != nil {
		return nil, err
	}
	pr, ok := reply.(*PredictReply)
	if !ok {
		return nil, structs.Errorf(structs.CodeInternal, "replica %s answered %T", a.ID, reply)
	}
	return pr.Outputs, nil
}

func (r *Router) localBatcher(a *structs.Allocation) *batcher {
	if a.NodeID != r.cfg.NodeID || r.cfg.NodeID == "" {
		return nil
	}
	return r.cfg.Local.get(a.ID, a.CreateIndex)
}

// pruneOutboxes forgets the outboxes of a model's replicas that are gone.
func (r *Router) pruneOutboxes(model string, routes *modelRoutes) {
	live := map[string]bool{}
	for _, allocs := range routes.allocs {
		for _, a := range allocs {
			live[a.ID] = true
		}
	}
	r.outboxMu.Lock()
	defer r.outboxMu.Unlock()
	for id, ob := range r.outboxes {
		if ob.model == model && !live[id] {
			delete(r.outboxes, id)
		}
	}
}

// sweep forgets what the router keeps per allocation, model and version
// once the registry no longer has them: in-flight counters, down marks
// (lapsed ones too), outboxes, cached routes, and the metrics series of
// deleted versions. Allocations come and go with every deployment change;
// without a sweep these would grow for as long as the node runs. It runs
// once per view index, on the first request that reads the registry after
// the index moved, before that request caches routes. A view older than the
// last one swept is skipped: what it lacks may be newer, not gone.
func (r *Router) sweep(view Registry) {
	idx := view.Index()
	if idx <= r.swept.Load() {
		return
	}
	r.sweepMu.Lock()
	defer r.sweepMu.Unlock()
	if idx <= r.swept.Load() {
		return
	}
	allocs, err := view.Allocations()
	if err != nil {
		return // the next request that reads the registry sweeps
	}
	r.swept.Store(idx)
	live := make(map[string]bool, len(allocs))
	for _, a := range allocs {
		live[a.ID] = true
	}
	now := time.Now()
	r.mu.Lock()
	for id := range r.inFlight {
		// A request still in flight to a replica that is gone keeps its
		// counter and counts down on it; nothing reads that one again.
		if !live[id] {
			delete(r.inFlight, id)
		}
	}
	for id, until := range r.down {
		if !live[id] || !now.Before(until) {
			delete(r.down, id)
		}
	}
	r.mu.Unlock()
	r.outboxMu.Lock()
	for id := range r.outboxes {
		if !live[id] {
			delete(r.outboxes, id)
		}
	}
	r.outboxMu.Unlock()

	gone := func(err error) bool { return structs.ErrorCode(err) == structs.CodeNotFound }
	r.routesMu.Lock()
	cached := slices.Collect(maps.Keys(r.routes))
	r.routesMu.Unlock()
	for _, name := range cached {
		if _, err := view.Model(name); gone(err) {
			r.routesMu.Lock()
			if rt := r.routes[name]; rt != nil && rt.index <= idx {
				delete(r.routes, name)
			}
			r.routesMu.Unlock()
		}
	}
	// Only deleted versions: one that is merely out of traffic keeps its
	// counts, which the model's metrics endpoint still reports.
	r.cfg.Metrics.Forget(func(model string, version uint64) bool {
		_, err := view.Version(model, version)
		return !gone(err)
	})
}

// outboxFor returns the outbox that coalesces requests to a remote replica;
// nil for a local replica.
func (r *Router) outboxFor(a *structs.Allocation, maxBatch int) *outbox {
	if a.NodeID == r.cfg.NodeID || r.cfg.NodeID == "" {
		return nil
	}
	// Coalescing adds no wait, so it is on whatever the deployment's
	// batching; max_batch, when larger, lets one message carry more.
	maxBatch = max(maxBatch, outboxMinItems)
	r.outboxMu.Lock()
	defer r.outboxMu.Unlock()
	ob := r.outboxes[a.ID]
	if ob == nil || ob.ref != ShardRef(a) || ob.max != maxBatch {
		ob = &outbox{sys: r.cfg.System, ref: ShardRef(a), max: maxBatch, model: a.Deployment, wg: &r.wg}
		r.outboxes[a.ID] = ob
	}
	return ob
}

// sendShadow scores a copy of the request on the shadow version, recording
// its metrics; its answer is dropped and nobody waits for it.
func (r *Router) sendShadow(t *Target, inputs []ml.Tensor) {
	select {
	case r.shadowSlots <- struct{}{}:
	default:
		return // too many shadow requests pending: drop this copy
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.shadowSlots }()
		start := time.Now()
		_, err := r.call(context.Background(), t, inputs, start.Add(30*time.Second))
		r.cfg.Metrics.Observe(t.Deployment.Name, t.Version.Version, time.Since(start), err)
	}()
}

// Close waits for shadow requests and coalesced messages in flight.
func (r *Router) Close() { r.wg.Wait() }

// InFlight returns this node's in-flight count for an allocation.
func (r *Router) InFlight(id string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.inFlight[id]; c != nil {
		return c.Load()
	}
	return 0
}

// wireError gives an error from a shard, local or remote, its registry code.
func wireError(err error) error {
	var re *transport.RemoteError
	if errors.As(err, &re) {
		switch re.Code {
		case structs.CodeInvalid, structs.CodeNotFound, structs.CodeInternal, structs.CodeUnavailable, CodeBusy:
			return &structs.CodedError{Code: re.Code, Message: re.Message}
		}
	}
	var ce *structs.CodedError
	if errors.As(err, &ce) {
		return err
	}
	switch {
	case errors.Is(err, actors.ErrBusy):
		return structs.Errorf(CodeBusy, "%v", err)
	case errors.Is(err, actors.ErrPanicked):
		return structs.Errorf(structs.CodeInternal, "%v", err)
	}
	return err
}

// retryable reports errors after which another replica may well succeed.
func retryable(err error) bool {
	if markDown(err) || errors.Is(err, actors.ErrBusy) {
		return true
	}
	switch structs.ErrorCode(err) {
	case CodeBusy, structs.CodeUnavailable:
		return true
	}
	return false
}

// markDown reports errors that say the replica itself is gone or cut off.
func markDown(err error) bool {
	return errors.Is(err, transport.ErrUnreachable) || errors.Is(err, transport.ErrConnLost) ||
		errors.Is(err, actors.ErrNotFound) || errors.Is(err, actors.ErrStopped) || errors.Is(err, actors.ErrStaleRef) ||
		errors.Is(err, transport.ErrShutdown)
}
