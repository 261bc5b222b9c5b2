package actors

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// control is a message for the runtime rather than the actor. Controls travel
// on their own channel, served before the mailbox, so a full mailbox cannot
// delay them.
type control int

const controlStop control = iota + 1

// envelope is one queued message.
type envelope struct {
	ctx   context.Context // the asker's; nil for a Tell
	msg   any
	reply chan result // buffered 1, so the actor never blocks on a gone asker; nil for a Tell
}

type result struct {
	val any
	err error
}

// cell is the runtime around one actor: its mailbox, goroutine and supervision.
type cell struct {
	sys     *System
	ref     Ref
	factory Factory
	opts    SpawnOptions
	logger  hclog.Logger

	mailbox chan envelope
	control chan control // capacity 1

	// ctx ends when the actor is stopped or the System shuts down; it bounds
	// Start and every Receive.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has finished

	// mu is read-locked to put an envelope in the mailbox and write-locked to
	// set closed, so that the final drain sees every envelope ever accepted.
	mu     sync.RWMutex
	closed bool // guarded by mu: no more envelopes are accepted
}

func newCell(s *System, ref Ref, f Factory, opts SpawnOptions) *cell {
	ctx, cancel := context.WithCancel(s.ctx)
	return &cell{
		sys:     s,
		ref:     ref,
		factory: f,
		opts:    opts,
		logger:  s.logger.With("actor", ref.String()),
		mailbox: make(chan envelope, opts.Mailbox),
		control: make(chan control, 1),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
}

// enqueue never blocks: a full mailbox is ErrBusy.
func (c *cell) enqueue(env envelope) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return fmt.Errorf("%w: %s", ErrStopped, c.ref)
	}
	select {
	case c.mailbox <- env:
		return nil
	default:
		return fmt.Errorf("%w: %s", ErrBusy, c.ref)
	}
}

// requestStop refuses further messages, posts a stop control and cancels the
// running Receive's context. What is still queued is answered with ErrStopped.
func (c *cell) requestStop() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.control <- controlStop:
	default: // a stop is already pending
	}
	c.cancel()
}

// run is the actor's goroutine: instances are created, fed and, after a crash,
// replaced with backoff until the actor is stopped or gives up.
func (c *cell) run() {
	var (
		crashes []time.Time // within the restart window
		failure error
	)
	defer func() { c.finish(failure) }()
	for {
		err := c.runInstance()
		if err == nil || c.ctx.Err() != nil {
			return // stopped; a crash while stopping is no failure
		}
		now := time.Now()
		crashes = since(crashes, now.Add(-c.opts.RestartWindow))
		if len(crashes) >= max(c.opts.MaxRestarts, 0) {
			failure = fmt.Errorf("actors: %s crashed %d times within %s, giving up: %w",
				c.ref, len(crashes)+1, c.opts.RestartWindow, err)
			c.logger.Error("actor failed", "error", err, "restarts", len(crashes))
			return
		}
		crashes = append(crashes, now)
		backoff := c.backoff(len(crashes))
		c.logger.Warn("actor crashed, restarting", "error", err, "restart", len(crashes), "backoff", backoff)
		if !c.pause(backoff) {
			return
		}
	}
}

// runInstance creates one instance and feeds it until a stop (nil) or a crash
// (the crash error). Queued messages stay queued across a crash.
func (c *cell) runInstance() error {
	if c.ctx.Err() != nil {
		return nil // stopped before (re)starting: do not build an instance for nothing
	}
	inst, err := c.newInstance()
	if err != nil {
		return err
	}
	defer c.retire(inst)
	for {
		// A pending control or stop is served before any queued message.
		select {
		case <-c.control:
			return nil
		default:
		}
		if c.ctx.Err() != nil {
			return nil
		}
		select {
		case <-c.control:
			return nil
		case <-c.ctx.Done():
			return nil
		case env := <-c.mailbox:
			if err := c.deliver(inst, env); err != nil {
				return err
			}
		}
	}
}

// newInstance calls the Factory and Start; a panic in either is a crash.
func (c *cell) newInstance() (inst Actor, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("actor panicked while starting", "panic", r, "stack", string(debug.Stack()))
			inst, err = nil, fmt.Errorf("%w: %s starting: %v", ErrPanicked, c.ref, r)
		}
	}()
	inst, err = c.factory()
	if err != nil {
		return nil, fmt.Errorf("actors: %s factory: %w", c.ref, err)
	}
	if inst == nil {
		return nil, fmt.Errorf("actors: %s factory returned no actor", c.ref)
	}
	if s, ok := inst.(Starter); ok {
		if err := s.Start(c.ctx); err != nil {
			return nil, fmt.Errorf("actors: %s start: %w", c.ref, err)
		}
	}
	return inst, nil
}

// retire calls Stop on an instance that started, containing a panic in it.
func (c *cell) retire(inst Actor) {
	s, ok := inst.(Stopper)
	if !ok {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("actor panicked in Stop", "panic", r)
		}
	}()
	s.Stop()
}

// deliver hands one envelope to inst. It returns an error only for a panic,
// after answering the asker.
func (c *cell) deliver(inst Actor, env envelope) error {
	ctx, release := c.ctx, func() {}
	if env.reply != nil {
		if err := env.ctx.Err(); err != nil {
			env.reply <- result{err: err} // the asker has gone: skip the work
			return nil
		}
		// Receive ends when either the asker gives up or the actor stops.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(env.ctx)
		stop := context.AfterFunc(c.ctx, cancel)
		release = func() {
			stop()
			cancel()
		}
	}
	res, panicked := c.receive(ctx, inst, env.msg)
	if d, ok := res.val.(Deferred); ok && res.err == nil && d != nil {
		c.answerLater(ctx, release, d, env.reply)
		return nil
	}
	release()
	if env.reply != nil {
		env.reply <- res
	} else if res.err != nil && !panicked {
		c.logger.Debug("message failed", "error", res.err)
	}
	if panicked {
		return res.err
	}
	return nil
}

// answerLater runs a Deferred reply on a goroutine owned by the System, so the
// actor goes on with its mailbox meanwhile. ctx and release belong to the
// goroutine from here on.
func (c *cell) answerLater(ctx context.Context, release func(), d Deferred, reply chan result) {
	c.sys.wg.Add(1)
	go func() {
		defer c.sys.wg.Done()
		defer release()
		var res result
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.logger.Error("deferred reply panicked", "panic", r, "stack", string(debug.Stack()))
					res = result{err: fmt.Errorf("%w: %s: %v", ErrPanicked, c.ref, r)}
				}
			}()
			res.val, res.err = d(ctx)
		}()
		if reply != nil {
			reply <- res
		} else if res.err != nil {
			c.logger.Debug("message failed", "error", res.err)
		}
	}()
}

func (c *cell) receive(ctx context.Context, inst Actor, msg any) (res result, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("actor panicked", "panic", r, "message", fmt.Sprintf("%T", msg), "stack", string(debug.Stack()))
			res, panicked = result{err: fmt.Errorf("%w: %s: %v", ErrPanicked, c.ref, r)}, true
		}
	}()
	val, err := inst.Receive(ctx, msg)
	return result{val: val, err: err}, false
}

// pause waits d before a restart; false when the actor was stopped meanwhile.
func (c *cell) pause(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-c.control:
		return false
	case <-c.ctx.Done():
		return false
	}
}

// backoff is Backoff doubled per earlier restart in the window, capped.
func (c *cell) backoff(restart int) time.Duration {
	d := c.opts.Backoff
	for i := 1; i < restart && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.opts.MaxBackoff)
}

// finish runs last on the actor's goroutine: it answers what is still queued,
// leaves the System and reports a failure.
func (c *cell) finish(failure error) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()

	reason := fmt.Errorf("%w: %s", ErrStopped, c.ref)
	if failure != nil {
		reason = fmt.Errorf("%w: %w", ErrStopped, failure)
	}
	for drained := false; !drained; {
		select {
		case env := <-c.mailbox:
			if env.reply != nil {
				env.reply <- result{err: reason}
			}
		default:
			drained = true
		}
	}
	c.sys.remove(c)
	if failure != nil && c.opts.OnFailed != nil {
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.logger.Error("OnFailed panicked", "panic", r)
				}
			}()
			c.opts.OnFailed(c.ref, failure)
		}()
	}
	close(c.done)
}

// since drops the times before cutoff from an ascending slice.
func since(times []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(times) && times[i].Before(cutoff) {
		i++
	}
	return times[i:]
}
