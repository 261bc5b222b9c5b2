package actors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/transport"
)

// DefaultTellTimeout bounds a Tell to a remote Ref when Config.TellTimeout is zero.
const DefaultTellTimeout = 5 * time.Second

// Config configures a System.
type Config struct {
	// NodeID is this node's ID: Refs with this Node (or none) are local.
	NodeID string
	// Logger receives the runtime's logs; nil discards them.
	Logger hclog.Logger
	// Transport carries messages to and from other nodes; nil keeps the System
	// local, and Refs on other nodes cannot be reached.
	Transport *transport.Transport
	// Resolve returns the RPC address (transport.Addr) of a node, for remote Refs.
	Resolve func(nodeID string) (rpcAddr string, err error)
	// TellTimeout bounds a remote Tell, which waits for the remote mailbox to
	// accept the message; zero means DefaultTellTimeout.
	TellTimeout time.Duration
}

// DefaultConfig returns a Config with the default timeouts; NodeID must be set.
func DefaultConfig() Config {
	return Config{TellTimeout: DefaultTellTimeout}
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return errors.New("actors: config: node_id is empty")
	}
	if c.TellTimeout < 0 {
		return fmt.Errorf("actors: config: tell_timeout %s is negative", c.TellTimeout)
	}
	return nil
}

// methodDeliver is the transport method that carries Tells and Asks between nodes.
const methodDeliver = "actors.deliver"

// System runs the actors of one node.
type System struct {
	cfg    Config
	logger hclog.Logger

	// ctx is cancelled by Shutdown; every actor's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per actor goroutine

	mu     sync.RWMutex
	cells  map[actorKey]*cell // guarded by mu: running actors by Kind and ID
	closed bool               // guarded by mu: set by Shutdown
}

type actorKey struct{ kind, id string }

// NewSystem returns a System with no actors. With a Transport it registers the
// "actors.deliver" method, through which other nodes reach its actors.
func NewSystem(cfg Config) (*System, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TellTimeout == 0 {
		cfg.TellTimeout = DefaultTellTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &System{
		cfg:    cfg,
		logger: logger.Named("actors"),
		ctx:    ctx,
		cancel: cancel,
		cells:  make(map[actorKey]*cell),
	}
	if cfg.Transport != nil {
		cfg.Transport.Register(methodDeliver, s.handleDeliver)
	}
	return s, nil
}

// Spawn starts an actor under ref, which must be local (ref.Node empty or this
// node; empty is filled in). It returns once the actor's goroutine runs; the
// Factory and Start run on it, while messages already queue.
func (s *System) Spawn(ref Ref, f Factory, opts SpawnOptions) error {
	if ref.Kind == "" || ref.ID == "" {
		return fmt.Errorf("actors: spawn %s: kind and id are required", ref)
	}
	if f == nil {
		return fmt.Errorf("actors: spawn %s: nil factory", ref)
	}
	if ref.Node == "" {
		ref.Node = s.cfg.NodeID
	}
	if ref.Node != s.cfg.NodeID {
		return fmt.Errorf("actors: spawn %s: node %q is not this node %q", ref, ref.Node, s.cfg.NodeID)
	}
	c := newCell(s, ref, f, opts.withDefaults())

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.cancel()
		return fmt.Errorf("%w: spawn %s: system shut down", ErrStopped, ref)
	}
	key := actorKey{ref.Kind, ref.ID}
	if old, ok := s.cells[key]; ok {
		c.cancel()
		return fmt.Errorf("%w: %s (running as %s)", ErrExists, ref, old.ref)
	}
	s.cells[key] = c
	s.goLocked(c.run)
	return nil
}

// goLocked runs f on a goroutine owned by the System; s.mu must be held and
// the System open, so that Shutdown's wait sees it.
func (s *System) goLocked(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *System) remove(c *cell) {
	s.mu.Lock()
	key := actorKey{c.ref.Kind, c.ref.ID}
	if s.cells[key] == c {
		delete(s.cells, key)
	}
	s.mu.Unlock()
}

// Stop stops the local actor at ref and waits until its goroutine has finished
// (Stop called, queued Asks answered with ErrStopped), or ctx ends. A stop is
// served before queued messages, and cancels the context of the running Receive.
func (s *System) Stop(ctx context.Context, ref Ref) error {
	if s.isRemote(ref) {
		return fmt.Errorf("actors: stop %s: not on this node %q", ref, s.cfg.NodeID)
	}
	c, err := s.cellFor(ref)
	if err != nil {
		return err
	}
	c.requestStop()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("actors: stop %s: %w", ref, ctx.Err())
	}
}

// Tell queues msg for the actor at ref and returns without waiting for it to be
// processed. Locally it never blocks: a full mailbox is ErrBusy. For a remote
// Ref it waits (up to Config.TellTimeout) until the remote mailbox accepted it,
// so ErrBusy, ErrNotFound and ErrStaleRef come back from there too.
func (s *System) Tell(ref Ref, msg any) error {
	if s.isRemote(ref) {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.TellTimeout)
		defer cancel()
		_, err := s.deliverRemote(ctx, ref, msg, false)
		return err
	}
	c, err := s.cellFor(ref)
	if err != nil {
		return err
	}
	return c.enqueue(envelope{msg: msg})
}

// Ask queues msg for the actor at ref and waits for its reply, or until ctx
// ends. A full mailbox fails at once with ErrBusy rather than waiting for room:
// an overloaded actor should shed load, not accumulate waiters. Receive sees a
// context that ends with ctx, so an actor can abandon work nobody waits for.
func (s *System) Ask(ctx context.Context, ref Ref, msg any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.isRemote(ref) {
		return s.deliverRemote(ctx, ref, msg, true)
	}
	c, err := s.cellFor(ref)
	if err != nil {
		return nil, err
	}
	reply := make(chan result, 1)
	if err := c.enqueue(envelope{ctx: ctx, msg: msg, reply: reply}); err != nil {
		return nil, err
	}
	select {
	case r := <-reply:
		return r.val, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Lookup returns the Ref (with its Gen) of the local actor of that kind and ID,
// including one that is stopping.
func (s *System) Lookup(kind, id string) (Ref, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cells[actorKey{kind, id}]
	if !ok {
		return Ref{}, false
	}
	return c.ref, true
}

// Refs returns the Refs of the local actors, sorted by Kind then ID.
func (s *System) Refs() []Ref {
	s.mu.RLock()
	refs := make([]Ref, 0, len(s.cells))
	for _, c := range s.cells {
		refs = append(refs, c.ref)
	}
	s.mu.RUnlock()
	slices.SortFunc(refs, func(a, b Ref) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
	})
	return refs
}

// Shutdown stops every actor and waits for their goroutines and pending
// Deferred replies, or until ctx ends.
// Afterwards Spawn, Tell and Ask fail with ErrStopped. It is idempotent.
func (s *System) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	cells := make([]*cell, 0, len(s.cells))
	for _, c := range s.cells {
		cells = append(cells, c)
	}
	s.mu.Unlock()

	for _, c := range cells {
		c.requestStop()
	}
	s.cancel()
	for _, c := range cells {
		select {
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("actors: shutdown: %w", ctx.Err())
		}
	}
	// Every actor has finished; what may still run are Deferred replies, whose
	// contexts have ended but which may take a while to notice.
	waited := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("actors: shutdown: waiting for deferred replies: %w", ctx.Err())
	}
}

func (s *System) isRemote(ref Ref) bool {
	return ref.Node != "" && ref.Node != s.cfg.NodeID
}

// cellFor finds the running actor for a local ref, checking its Gen.
func (s *System) cellFor(ref Ref) (*cell, error) {
	s.mu.RLock()
	c, ok := s.cells[actorKey{ref.Kind, ref.ID}]
	closed := s.closed
	s.mu.RUnlock()
	if !ok {
		if closed {
			return nil, fmt.Errorf("%w: %s: system shut down", ErrStopped, ref)
		}
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if c.ref.Gen != ref.Gen {
		return nil, fmt.Errorf("%w: %s (running gen %d)", ErrStaleRef, ref, c.ref.Gen)
	}
	return c, nil
}
