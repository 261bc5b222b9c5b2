package serving

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/actors/internal/proc"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Limits and timings of the process runtime.
const (
	processDefaultReadyTimeout = 60 * time.Second
	// processStopGrace is how long a server gets to exit on SIGTERM before
	// its process group is killed.
	processStopGrace = 5 * time.Second
	// processWaitDelay bounds how long a reaped server's stragglers may keep
	// the log pipe open before Wait gives up on them.
	processWaitDelay  = time.Second
	processMinBackoff = 100 * time.Millisecond
	processMaxBackoff = 10 * time.Second
	// A server that crashes processMaxCrashes times within processCrashWindow
	// is given up on: restarting it again would only hide the fault from the
	// leader, which can place the replica elsewhere.
	processMaxCrashes  = 5
	processCrashWindow = time.Minute
	processMaxLogSize  = 16 << 20
	// processMaxResponse bounds an inference answer read into memory.
	processMaxResponse = 256 << 20
	processMaxMetadata = 4 << 20
	// processLogTail bounds the server's last output quoted in an error.
	processLogTail      = 512
	processLogTailLines = 20
)

// ProcessConfig says how to run one replica's server process.
type ProcessConfig struct {
	// Spec is the version's command, extra environment and served name.
	Spec structs.ProcessSpec
	// Model is the Kiln model name; the server serves it under that name
	// unless Spec.ModelName says otherwise.
	Model string
	// ModelPath is the artifact's local path, "" if the version has none.
	ModelPath string
	// GPUs are the device indices reserved for this replica. They become
	// CUDA_VISIBLE_DEVICES, which is set to "" when there are none so that a
	// server never takes every device of the node.
	GPUs []int
	// WorkDir is the directory the process runs in and logs to
	// (process.log); it is created if missing. Empty means a temporary
	// directory, removed at Close.
	WorkDir string
	// Logger receives the runtime's own events (exits, restarts).
	Logger hclog.Logger
	// ReadyTimeout bounds the wait for /v2/health/ready at start and at
	// each restart; 0 means 60s.
	ReadyTimeout time.Duration
	// Exec is this node's exec config; the zero value refuses every command.
	Exec ExecPolicy
}

// ProcessModel is a model served by the user's own inference server
// (PyTorch, TensorFlow, Triton, MLServer...) running as a child process
// that speaks the Open Inference Protocol v2 over REST on a loopback port.
// It implements ml.Model and ml.Closer.
//
// A supervisor goroutine restarts the server when it exits, with backoff;
// predictions made meanwhile fail at once rather than queue behind a start
// that may take a minute. After too many crashes it gives up, and Failed
// says why, so the shard actor can report the replica failed and the leader
// place it elsewhere.
type ProcessModel struct {
	cfg    ProcessConfig
	name   string // the name the server serves the model under
	logger hclog.Logger
	client *http.Client
	log    *proc.Log
	schema ml.Schema  // read once at start; immutable afterwards
	tmpDir string     // WorkDir made by StartProcess, removed at Close
	path   string     // the resolved executable of Spec.Command[0]
	user   *proc.User // whom the server runs as; nil: the agent's own user

	stopSupervisor context.CancelFunc
	supervisorDone chan struct{}
	closeOnce      sync.Once

	mu sync.Mutex
	// mu guards the fields below.
	cur        *processInstance // the running server, or the last one started
	restarting bool             // cur exited and a new one is not ready yet
	lastExit   string           // why the last server exited or failed to start
	failed     error            // set once restarting is given up
	closed     bool
	crashes    []time.Time // exits and failed restarts within processCrashWindow
}

// processInstance is one run of the server.
type processInstance struct {
	cmd    *exec.Cmd
	port   int
	base   string        // http://127.0.0.1:port
	exited chan struct{} // closed once Wait returns
	// waitErr is Wait's result; read it only after exited is closed.
	waitErr error
}

// StartProcess starts the server of cfg and returns once it answers ready
// and its metadata has been read. A server that exits or does not become
// ready within cfg.ReadyTimeout is killed, and the error wraps ml.ErrBadModel
// with its exit status and the last lines of its output.
//
// Before anything runs, cfg.Exec must allow the command (as written and as
// resolved) and every PATH or LD_* variable the spec sets; otherwise the
// error wraps ErrExecRefused. The server's environment is the spec's env and
// Kiln's own variables only: nothing of the agent's is inherited.
func StartProcess(ctx context.Context, cfg ProcessConfig) (*ProcessModel, error) {
	if len(cfg.Spec.Command) == 0 || cfg.Spec.Command[0] == "" {
		return nil, fmt.Errorf("%w: serving: process for model %q has no command", ml.ErrBadModel, cfg.Model)
	}
	user, err := proc.LookupUser(cfg.Exec.User)
	if err != nil {
		return nil, fmt.Errorf("%w: model %q: exec.user: %w", ErrExecRefused, cfg.Model, err)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = processDefaultReadyTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	m := &ProcessModel{
		cfg:            cfg,
		name:           cfg.Spec.ModelName,
		logger:         cfg.Logger.Named("process").With("model", cfg.Model),
		client:         newProcessClient(),
		supervisorDone: make(chan struct{}),
		user:           user,
	}
	if m.name == "" {
		m.name = cfg.Model
	}
	if m.cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "kiln-process-")
		if err != nil {
			return nil, fmt.Errorf("serving: process work dir: %w", err)
		}
		m.cfg.WorkDir, m.tmpDir = dir, dir
	} else if err := os.MkdirAll(m.cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("serving: process work dir: %w", err)
	}
	if m.path, err = checkExec(m.cfg.Exec, cfg.Model, cfg.Spec, m.cfg.WorkDir); err != nil {
		m.removeTmpDir()
		return nil, err
	}
	if user != nil {
		// The server runs in its work dir and may write there.
		if err := os.Chown(m.cfg.WorkDir, int(user.UID), int(user.GID)); err != nil {
			m.removeTmpDir()
			return nil, fmt.Errorf("serving: process work dir for exec.user %q: %w", user.Name, err)
		}
	}
	log, err := proc.OpenLog(filepath.Join(m.cfg.WorkDir, "process.log"), processMaxLogSize)
	if err != nil {
		m.removeTmpDir()
		return nil, fmt.Errorf("serving: process for model %q: %w", cfg.Model, err)
	}
	m.log = log

	port, err := freePort(0)
	if err == nil {
		m.cur, err = m.startInstance(ctx, port)
	}
	if err != nil {
		m.client.CloseIdleConnections()
		m.log.Close()
		m.removeTmpDir()
		return nil, err
	}
	m.schema = m.fetchSchema(ctx, m.cur.base)
	m.logger.Info("process ready", "pid", m.cur.cmd.Process.Pid, "port", m.cur.port,
		"inputs", len(m.schema.Inputs), "outputs", len(m.schema.Outputs))

	// Supervision outlives ctx, which only bounds the start.
	superCtx, cancel := context.WithCancel(context.Background())
	m.stopSupervisor = cancel
	go m.supervise(superCtx, m.cur)
	return m, nil
}

// Schema returns the inputs and outputs the server's metadata listed, or an
// empty schema when it gave none.
func (m *ProcessModel) Schema() ml.Schema { return m.schema }

// Failed returns the reason the server was given up on, or nil while it is
// running or restarting.
func (m *ProcessModel) Failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

// Close stops supervision, sends SIGTERM to the server's process group,
// and SIGKILL after 5s. It waits for the server to be reaped and is
// idempotent.
func (m *ProcessModel) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		m.stopSupervisor()
		<-m.supervisorDone
		m.mu.Lock()
		p := m.cur
		m.mu.Unlock()
		m.stopInstance(p)
		m.client.CloseIdleConnections()
		m.log.Close()
		m.removeTmpDir()
		m.logger.Info("process stopped", "pid", p.cmd.Process.Pid)
	})
	return nil
}

// target returns the base URL of the running server, or why there is none.
func (m *ProcessModel) target() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return "", fmt.Errorf("%w: serving: process for model %q is closed", ml.ErrRuntime, m.cfg.Model)
	case m.failed != nil:
		return "", m.failed
	case m.restarting:
		return "", fmt.Errorf("%w: serving: process for model %q is restarting after it exited (%s)", ml.ErrRuntime, m.cfg.Model, m.lastExit)
	}
	return m.cur.base, nil
}

// supervise restarts the server whenever it exits, until ctx ends or the
// server crashes too often. It owns every instance it starts; Close stops
// the last one after supervise has returned.
func (m *ProcessModel) supervise(ctx context.Context, p *processInstance) {
	defer close(m.supervisorDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.exited:
		}
		reason := exitReason(p)
		// Children the server left behind would hold its port and GPU memory.
		proc.KillGroup(p.cmd, syscall.SIGKILL)
		// Pooled connections died with the server; a POST on one would fail.
		m.client.CloseIdleConnections()
		m.logger.Warn("process exited", "pid", p.cmd.Process.Pid, "exit", reason)
		port := p.port
		for {
			delay, err := m.recordCrash(reason, time.Now())
			if err != nil {
				m.logger.Error("process keeps crashing; not restarting it", "error", err)
				m.log.Note("%v", err)
				return
			}
			m.log.Note("process exited (%s); restarting in %s", reason, delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			np, err := m.restart(ctx, port)
			if err == nil {
				m.mu.Lock()
				m.cur, m.restarting = np, false
				m.mu.Unlock()
				m.logger.Info("process restarted", "pid", np.cmd.Process.Pid, "port", np.port)
				p = np
				break
			}
			if ctx.Err() != nil {
				return
			}
			m.logger.Warn("process restart failed", "error", err)
			reason = err.Error()
			// The old port may be what failed (taken, or not reusable yet).
			port = 0
		}
	}
}

// restart starts a new instance, on port if it is still free.
func (m *ProcessModel) restart(ctx context.Context, port int) (*processInstance, error) {
	port, err := freePort(port)
	if err != nil {
		return nil, err
	}
	return m.startInstance(ctx, port)
}

// recordCrash counts an exit or a failed restart. It returns how long to
// wait before the next start (doubling with each recent crash), or the
// error the model fails with from now on once there were too many.
func (m *ProcessModel) recordCrash(reason string, now time.Time) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	recent := m.crashes[:0]
	for _, t := range m.crashes {
		if now.Sub(t) < processCrashWindow {
			recent = append(recent, t)
		}
	}
	m.crashes = append(recent, now)
	m.lastExit = reason
	n := len(m.crashes)
	if n >= processMaxCrashes {
		m.restarting = false
		m.failed = fmt.Errorf("%w: serving: process for model %q exited %d times within %s, so it is not restarted again; last: %s",
			ml.ErrRuntime, m.cfg.Model, n, processCrashWindow, reason)
		return 0, m.failed
	}
	m.restarting = true
	delay := processMaxBackoff
	if n <= 16 { // beyond that the shift overflows; the cap applies anyway
		delay = min(processMinBackoff<<(n-1), processMaxBackoff)
	}
	return delay, nil
}

// startInstance starts the server on port and waits until it answers
// ready. On failure the instance is stopped before returning.
func (m *ProcessModel) startInstance(ctx context.Context, port int) (*processInstance, error) {
	// The resolved path runs, under the name the version wrote.
	cmd := exec.Command(m.path, m.cfg.Spec.Command[1:]...)
	cmd.Args[0] = m.cfg.Spec.Command[0]
	cmd.Dir = m.cfg.WorkDir
	cmd.Env = m.environ(port)
	// One writer for both streams, so exec copies them on one goroutine.
	cmd.Stdout, cmd.Stderr = m.log, m.log
	cmd.WaitDelay = processWaitDelay
	p := &processInstance{
		cmd:    cmd,
		port:   port,
		base:   "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		exited: make(chan struct{}),
	}
	if err := proc.Start(cmd, m.user, func(err error) {
		p.waitErr = err
		close(p.exited)
	}); err != nil {
		return nil, fmt.Errorf("%w: serving: process for model %q: %w", ml.ErrBadModel, m.cfg.Model, err)
	}
	m.log.Note("started %q (pid %d) on port %d", m.cfg.Spec.Command, cmd.Process.Pid, port)
	if err := m.waitReady(ctx, p); err != nil {
		m.stopInstance(p)
		return nil, err
	}
	return p, nil
}

// environ is the spec's environment and Kiln's own variables, which a spec
// cannot override (the port, the GPUs). Nothing of the agent's environment is
// inherited: its tokens, proxies and paths are not the replica's business.
func (m *ProcessModel) environ(port int) []string {
	env := make([]string, 0, len(m.cfg.Spec.Env)+len(kilnEnv))
	for _, k := range slices.Sorted(maps.Keys(m.cfg.Spec.Env)) {
		if !slices.Contains(kilnEnv, k) {
			env = append(env, k+"="+m.cfg.Spec.Env[k])
		}
	}
	gpus := make([]string, len(m.cfg.GPUs))
	for i, g := range m.cfg.GPUs {
		gpus[i] = strconv.Itoa(g)
	}
	return append(env,
		"KILN_PORT="+strconv.Itoa(port),
		"KILN_MODEL_PATH="+m.cfg.ModelPath,
		"KILN_MODEL_NAME="+m.name,
		"CUDA_VISIBLE_DEVICES="+strings.Join(gpus, ","),
	)
}

// waitReady polls /v2/health/ready until it answers 200, the process exits,
// ReadyTimeout passes or ctx ends.
func (m *ProcessModel) waitReady(ctx context.Context, p *processInstance) error {
	readyCtx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	interval := 10 * time.Millisecond
	for {
		if m.ready(readyCtx, p) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w: serving: process for model %q exited before it was ready: %s%s",
				ml.ErrBadModel, m.cfg.Model, exitReason(p), m.tailNote())
		case <-readyCtx.Done():
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("serving: process for model %q: waiting for ready: %w", m.cfg.Model, err)
			}
			return fmt.Errorf("%w: serving: process for model %q did not answer ready on port %d within %s%s",
				ml.ErrBadModel, m.cfg.Model, p.port, m.cfg.ReadyTimeout, m.tailNote())
		case <-time.After(interval):
		}
		// Servers that load large models take seconds; no need to poll them
		// faster than a few times a second.
		interval = min(interval*2, 250*time.Millisecond)
	}
}

// stopInstance stops p's process group, SIGTERM first, and waits until p is
// reaped.
func (m *ProcessModel) stopInstance(p *processInstance) {
	proc.KillGroup(p.cmd, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(processStopGrace):
		m.logger.Warn("process ignored SIGTERM; killing it", "pid", p.cmd.Process.Pid, "grace", processStopGrace)
	}
	// Also reaches children still running after the server itself exited.
	proc.KillGroup(p.cmd, syscall.SIGKILL)
	<-p.exited
}

func (m *ProcessModel) removeTmpDir() {
	if m.tmpDir != "" {
		_ = os.RemoveAll(m.tmpDir)
	}
}

// exitReason says how p ended, such as "exit status 3" or "signal: killed".
// Call it only after p.exited is closed.
func exitReason(p *processInstance) string {
	if p.cmd.ProcessState != nil {
		return p.cmd.ProcessState.String()
	}
	if p.waitErr != nil {
		return p.waitErr.Error()
	}
	return "exited"
}

// tailNote is the end of the server's output as a suffix for an error
// message: the reason a server would not start is usually in its last
// lines. The oldest lines go first when they would make it too long.
func (m *ProcessModel) tailNote() string {
	lines := m.log.Tail(processLogTailLines)
	text := strings.Join(lines, " | ")
	for len(text) > processLogTail && len(lines) > 1 {
		lines = lines[1:]
		text = strings.Join(lines, " | ")
	}
	if len(text) > processLogTail {
		text = "..." + strings.ToValidUTF8(text[len(text)-processLogTail:], "")
	}
	if text == "" {
		return fmt.Sprintf(" (output in %s)", m.log.Path())
	}
	return fmt.Sprintf("; last output: %s (all of it in %s)", text, m.log.Path())
}
