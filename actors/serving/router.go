package serving

import (
	"context"
	"errors"
	"hash/fnv"
	"math/rand/v2"
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
	System *actors.System
	View   ViewFunc
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
}

// Router answers predictions on any node: it picks the version and the
// replica and calls the replica's shard actor, wherever it runs.
type Router struct {
	cfg RouterConfig
	log hclog.Logger

	mu       sync.Mutex
	inFlight map[string]*atomic.Int64 // guarded by mu (the map); by alloc ID
	down     map[string]time.Time     // guarded by mu: alloc ID -> avoided until

	shadowSlots chan struct{}
	wg          sync.WaitGroup // shadow requests
}

// NewRouter returns a Router.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.DownFor <= 0 {
		cfg.DownFor = 2 * time.Second
	}
	if cfg.MaxShadow <= 0 {
		cfg.MaxShadow = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Router{
		cfg: cfg, log: cfg.Logger.Named("router"),
		inFlight: map[string]*atomic.Int64{}, down: map[string]time.Time{},
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
// already_exists (409) for a model or version that is not deployed,
// unavailable when no replica of the version runs yet.
func (r *Router) Resolve(model string, sel Selector) (*Target, error) {
	view, release := r.cfg.View()
	defer release()
	m, err := view.Model(model)
	if err != nil {
		return nil, err
	}
	d, err := view.Deployment(model)
	if err != nil {
		if structs.ErrorCode(err) == structs.CodeNotFound {
			return nil, structs.Errorf(structs.CodeConflict, "model %q is not deployed; deploy it with PUT /v1/deployments/%s", model, model)
		}
		return nil, err
	}
	version := sel.Version
	if sel.Alias != "" {
		v, ok := m.Aliases[sel.Alias]
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
	allocs, err := view.Allocations()
	if err != nil {
		return nil, err
	}
	t, err := r.target(view, d, version, allocs)
	if err != nil {
		return nil, err
	}
	if d.Traffic.Shadow != 0 && d.Traffic.Shadow != version {
		if st, err := r.target(view, d, d.Traffic.Shadow, allocs); err == nil {
			t.shadow = st
		}
	}
	return t, nil
}

func (r *Router) target(view Registry, d *structs.Deployment, version uint64, allocs []*structs.Allocation) (*Target, error) {
	v, err := view.Version(d.Name, version)
	if err != nil {
		return nil, err
	}
	served := false
	for _, s := range d.Traffic.ServedVersions() {
		served = served || s == version
	}
	if !served {
		return nil, structs.Errorf(structs.CodeConflict, "version %d of model %q is not deployed (the deployment serves %v)", version, d.Name, d.Traffic.ServedVersions())
	}
	t := &Target{Deployment: d, Version: v}
	placed := 0
	for _, a := range allocs {
		if a.Deployment != d.Name || a.Version != version {
			continue
		}
		placed++
		if a.State == structs.AllocRunning && r.cfg.Alive(a.NodeID) {
			t.replicas = append(t.replicas, a)
		}
	}
	if len(t.replicas) == 0 {
		return nil, structs.Errorf(structs.CodeUnavailable, "no replica of model %q version %d is running yet (%d placed of %d)", d.Name, version, placed, d.Replicas)
	}
	return t, nil
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
// version's metrics.
func (r *Router) Predict(ctx context.Context, t *Target, inputs []ml.Tensor) ([]ml.Tensor, error) {
	if t.shadow != nil {
		r.sendShadow(t.shadow, inputs)
	}
	start := time.Now()
	out, err := r.call(ctx, t, inputs)
	r.cfg.Metrics.Observe(t.Deployment.Name, t.Version.Version, time.Since(start), err)
	return out, err
}

func (r *Router) call(ctx context.Context, t *Target, inputs []ml.Tensor) ([]ml.Tensor, error) {
	first := r.pick(t.replicas, "")
	out, err := r.ask(ctx, first, inputs)
	if err == nil || !retryable(err) || ctx.Err() != nil {
		return out, err
	}
	second := r.pick(t.replicas, first.ID)
	if second == nil {
		return nil, err
	}
	r.log.Debug("retrying on another replica", "failed", first.ID, "retry", second.ID, "error", err)
	return r.ask(ctx, second, inputs)
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
		return b
	}
	return a
}

func (r *Router) counterLocked(id string) *atomic.Int64 {
	c := r.inFlight[id]
	if c == nil {
		c = new(atomic.Int64)
		r.inFlight[id] = c
	}
	return c
}

func (r *Router) ask(ctx context.Context, a *structs.Allocation, inputs []ml.Tensor) ([]ml.Tensor, error) {
	r.mu.Lock()
	c := r.counterLocked(a.ID)
	r.mu.Unlock()
	c.Add(1)
	reply, err := r.cfg.System.Ask(ctx, ShardRef(a), &PredictRequest{Inputs: inputs})
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
	pr, ok := reply.(*PredictReply)
	if !ok {
		return nil, structs.Errorf(structs.CodeInternal, "replica %s answered %T", a.ID, reply)
	}
	return pr.Outputs, nil
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
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		_, err := r.call(ctx, t, inputs)
		r.cfg.Metrics.Observe(t.Deployment.Name, t.Version.Version, time.Since(start), err)
	}()
}

// Close waits for shadow requests in flight.
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
