package serving

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// BlobSource makes an artifact available on this node, fetching it from
// another node if needed, and returns its local path.
type BlobSource interface {
	Ensure(ctx context.Context, digest string, holders []string) (string, error)
}

// Loader loads a model file of an in-process format (ml/formats.Loader.Load).
type Loader func(format, path string, opts ml.LoadOptions) (ml.Model, error)

// ShardConfig is what a shard actor needs to load and serve one replica.
type ShardConfig struct {
	Alloc    structs.Allocation
	Version  structs.ModelVersion
	Batching structs.Batching
	Blobs    BlobSource
	Load     Loader
	// WorkDir is where a process replica runs and logs.
	WorkDir string
	// Exec is this node's exec config, which a process replica must pass
	// before anything is fetched or started.
	Exec ExecPolicy
	// Workers is how many requests the replica scores at once; 0 means
	// GOMAXPROCS.
	Workers int
	// Threads is the runtime's intra-op thread count for the model (the
	// deployment's resources.threads); 0 means the runtime's default.
	Threads int
	// QueueLen bounds the requests waiting for a worker; 0 means 1024.
	QueueLen int
	// Local, when set, is where the loaded replica registers for direct
	// calls from this node's router.
	Local  *LocalShards
	Logger hclog.Logger
}

// shardLoadTimeout bounds fetching and loading a model at start.
const shardLoadTimeout = 10 * time.Minute

// Shard is the actor that holds one loaded replica of a model version.
type Shard struct {
	cfg     ShardConfig
	model   ml.Model
	batcher *batcher
}

// NewShardFactory returns the Factory the reconciler spawns a replica with.
func NewShardFactory(cfg ShardConfig) actors.Factory {
	return func() (actors.Actor, error) { return &Shard{cfg: cfg}, nil }
}

// Start fetches the artifact if this node lacks it, loads the model and
// starts the workers.
func (s *Shard) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, shardLoadTimeout)
	defer cancel()
	v := &s.cfg.Version
	workDir, dirErr := replicaWorkDir(s.cfg.WorkDir, s.cfg.Alloc.ID)
	if dirErr != nil {
		return dirErr
	}
	if v.Format == structs.FormatProcess {
		if v.Process == nil {
			return fmt.Errorf("serving: %s v%d is a process version without a process spec", v.Model, v.Version)
		}
		// Placement checked the node's record; this checks its live config,
		// which a registry write or a restored snapshot cannot change.
		if _, err := checkExec(s.cfg.Exec, v.Model, *v.Process, workDir); errors.Is(err, ErrExecRefused) {
			return err
		}
	}
	var path string
	if v.Digest != "" {
		p, err := s.cfg.Blobs.Ensure(ctx, v.Digest, v.Holders)
		if err != nil {
			return fmt.Errorf("serving: artifact of %s v%d: %w", v.Model, v.Version, err)
		}
		path = p
	}
	var (
		m   ml.Model
		err error
	)
	if v.Format == structs.FormatProcess {
		m, err = StartProcess(ctx, ProcessConfig{
			Spec:      *v.Process,
			Model:     v.Model,
			ModelPath: path,
			GPUs:      s.cfg.Alloc.GPUs,
			WorkDir:   workDir,
			Logger:    s.cfg.Logger,
			Exec:      s.cfg.Exec,
		})
	} else {
		opts := ml.LoadOptions{Threads: s.cfg.Threads, GPU: -1}
		if len(s.cfg.Alloc.GPUs) > 0 {
			opts.GPU = s.cfg.Alloc.GPUs[0]
		}
		m, err = s.cfg.Load(v.Format, path, opts)
	}
	if err != nil {
		return fmt.Errorf("serving: load %s v%d: %w", v.Model, v.Version, err)
	}
	s.model = m
	if r, ok := m.(ml.Runtimed); ok && s.cfg.Logger != nil {
		// Which runtime and device serve the replica (a GPU replica may
		// have fallen back to CPU): said once, where the operator looks.
		s.cfg.Logger.Info("replica loaded", "runtime", r.Runtime())
	}
	workers := s.cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	queue := s.cfg.QueueLen
	if queue <= 0 {
		queue = 1024
	}
	s.batcher = newBatcher(m, workers, queue, s.cfg.Batching.MaxBatch, time.Duration(s.cfg.Batching.MaxWaitMS)*time.Millisecond)
	logPanic := func(pe *ml.PanicError) {
		s.cfg.Logger.Error("model panicked; the request failed, the replica goes on", "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
	}
	s.batcher.onPanic.Store(&logPanic)
	s.cfg.Local.add(s.cfg.Alloc.ID, s.cfg.Alloc.CreateIndex, s.batcher)
	return nil
}

// Receive queues predictions with the batcher and answers them later, so the
// mailbox never waits on the model.
func (s *Shard) Receive(ctx context.Context, msg any) (any, error) {
	switch m := msg.(type) {
	case *PredictRequest:
		p, err := s.batcher.submit(ctx, m.Inputs)
		if err != nil {
			return nil, codedError(err)
		}
		return actors.Deferred(p.wait), nil
	case *PredictBatchRequest:
		return s.receiveBatch(ctx, m), nil
	case *LoadRequest:
		r := &LoadReply{InFlight: s.batcher.inFlight.Load(), Served: s.batcher.served.Load()}
		if err := s.failed(); err != nil {
			r.Failed = err.Error()
		}
		return r, nil
	}
	return nil, fmt.Errorf("serving: shard got unexpected message %T", msg)
}

// receiveBatch queues every item of a coalesced message with the batcher
// (where they merge with whatever else is queued) and answers once all are
// done, each item with its own outputs or error.
func (s *Shard) receiveBatch(ctx context.Context, m *PredictBatchRequest) actors.Deferred {
	items := make([]*pending, len(m.Items))
	errs := make([]error, len(m.Items))
	for i, it := range m.Items {
		items[i], errs[i] = s.batcher.submit(ctx, it.Inputs)
	}
	return func(ctx context.Context) (any, error) {
		reply := &PredictBatchReply{Items: make([]PredictItemReply, len(items))}
		for i, p := range items {
			var err error
			if p == nil {
				err = codedError(errs[i])
			} else {
				var out any
				if out, err = p.wait(ctx); err == nil {
					reply.Items[i].Outputs = out.(*PredictReply).Outputs
				}
			}
			if err != nil {
				reply.Items[i].Code = structs.ErrorCode(err)
				reply.Items[i].Message = err.Error()
			}
		}
		return reply, nil
	}
}

// Stop drains the workers and releases the model.
func (s *Shard) Stop() {
	if s.batcher != nil {
		s.cfg.Local.remove(s.cfg.Alloc.ID, s.batcher)
		s.batcher.close()
	}
	if c, ok := s.model.(ml.Closer); ok {
		if err := c.Close(); err != nil {
			s.cfg.Logger.Warn("closing model", "error", err)
		}
	}
}

// failed reports a process replica that gave up restarting its server.
func (s *Shard) failed() error {
	if p, ok := s.model.(interface{ Failed() error }); ok {
		return p.Failed()
	}
	return nil
}
