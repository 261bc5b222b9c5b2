package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
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
	processLogTail     = 512
)

// ErrExecRefused is wrapped by the error of a process replica that this
// node's exec config does not let start: its command, a variable of its
// environment, or exec.user.
var ErrExecRefused = errors.New("serving: refused by this node's exec config")

// ExecPolicy is the node's own exec {} config: which commands a process
// replica may run here, as whom, and which otherwise refused variables its
// environment may set. The zero value runs nothing. Placement reads the same
// Enabled and AllowedCommands from the node's registry record; the node checks
// them again here, against its live config, so that a registry write or a
// restored snapshot cannot get a command run where the agent's config forbids
// it.
type ExecPolicy struct {
	// NodeExec holds Enabled and AllowedCommands (path.Match globs over the
	// command's first word, as written and as resolved; "*" allows any).
	structs.NodeExec
	// User, when set, is the account the server runs as (unix only; the
	// agent must be root unless it is that user itself).
	User string
	// AllowedEnv lists the variables a version may set that are refused
	// otherwise: PATH and LD_* (LD_PRELOAD, LD_LIBRARY_PATH...).
	AllowedEnv []string
}

// refusedEnv reports whether a version's env may set k only where
// exec.allowed_env lists it: these change which program a name runs or what
// code a program loads, which is the agent's config to decide.
func refusedEnv(k string) bool { return k == "PATH" || strings.HasPrefix(k, "LD_") }

// kilnEnv are the variables Kiln sets for every process replica; a version's
// env cannot override them.
var kilnEnv = []string{"KILN_PORT", "KILN_MODEL_PATH", "KILN_MODEL_NAME", "CUDA_VISIBLE_DEVICES"}

// resolveCommand returns the file that running name in dir executes: an
// absolute path as it is, a relative path with a separator under dir, and a
// bare name looked up on the agent's PATH (exec.LookPath). "" when a bare
// name is not found: the child's own environment has no PATH unless its
// version sets one, so the agent resolves the program before starting it.
func resolveCommand(name, dir string) string {
	switch {
	case filepath.IsAbs(name):
		return filepath.Clean(name)
	case strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator):
		p, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			return ""
		}
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "" // not found, or found only through a relative PATH entry (exec.ErrDot)
	}
	if p, err = filepath.Abs(p); err != nil {
		return ""
	}
	return p
}

// check resolves spec's command as run in dir and checks it and spec's
// environment against the policy. It returns the path to execute.
func (p ExecPolicy) check(model string, spec structs.ProcessSpec, dir string) (string, error) {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return "", fmt.Errorf("%w: serving: process for model %q has no command", ml.ErrBadModel, model)
	}
	name := spec.Command[0]
	if !p.Enabled {
		return "", fmt.Errorf("%w: model %q: command %q cannot run here: exec.enabled is false in this node's agent config",
			ErrExecRefused, model, name)
	}
	path := resolveCommand(name, dir)
	if !p.Allows(name, path) {
		resolved := ""
		if path != "" && path != name {
			resolved = fmt.Sprintf(" (%s)", path)
		}
		return "", fmt.Errorf("%w: model %q: command %q%s matches none of exec.allowed_commands %q in this node's agent config",
			ErrExecRefused, model, name, resolved, p.AllowedCommands)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		if refusedEnv(k) && !slices.Contains(p.AllowedEnv, k) {
			return "", fmt.Errorf("%w: model %q: its env sets %s, which this node allows only when exec.allowed_env in its agent config lists it",
				ErrExecRefused, model, k)
		}
	}
	if path == "" {
		return "", fmt.Errorf("%w: serving: process for model %q: command %q is not found on this node's PATH", ml.ErrBadModel, model, name)
	}
	return path, nil
}

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

// replicaWorkDir is the work directory of allocation id under base. The ID
// comes from the registry, which a restored snapshot fills too: one that is
// not a single plain path element ("..", a separator, a NUL) is refused
// rather than joined, so a replica never runs or writes outside base.
func replicaWorkDir(base, id string) (string, error) {
	if !filepath.IsLocal(id) || filepath.Base(id) != id || strings.ContainsAny(id, `/\`+"\x00") || id == "." {
		return "", fmt.Errorf("serving: allocation id %.40q is not a plain directory name", id)
	}
	return filepath.Join(base, id), nil
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
	log    *processLog
	schema ml.Schema // read once at start; immutable afterwards
	tmpDir string    // WorkDir made by StartProcess, removed at Close
	path   string    // the resolved executable of Spec.Command[0]
	user   *runAs    // whom the server runs as; nil: the agent's own user

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

// runAs is the account a server runs as (exec.user), looked up at start.
type runAs struct {
	name     string
	uid, gid uint32
	groups   []uint32
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
	user, err := lookupRunAs(cfg.Exec.User)
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
	if m.path, err = m.cfg.Exec.check(cfg.Model, cfg.Spec, m.cfg.WorkDir); err != nil {
		m.removeTmpDir()
		return nil, err
	}
	if user != nil {
		// The server runs in its work dir and may write there.
		if err := os.Chown(m.cfg.WorkDir, int(user.uid), int(user.gid)); err != nil {
			m.removeTmpDir()
			return nil, fmt.Errorf("serving: process work dir for exec.user %q: %w", user.name, err)
		}
	}
	log, err := openProcessLog(filepath.Join(m.cfg.WorkDir, "process.log"), processMaxLogSize)
	if err != nil {
		m.removeTmpDir()
		return nil, err
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

// Predict sends inputs to the server's /v2/models/{name}/infer. A 400 (or
// 422) from the server wraps ml.ErrBadInput with its message; every other
// failure, including a server that is restarting or gone, wraps
// ml.ErrRuntime.
func (m *ProcessModel) Predict(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	base, err := m.target()
	if err != nil {
		return nil, err
	}
	body, err := m.encodeInfer(inputs)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/v2/models/"+url.PathEscape(m.name)+"/infer", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: serving: process for model %q: %w", ml.ErrRuntime, m.cfg.Model, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: serving: process for model %q: %w", ml.ErrRuntime, m.cfg.Model, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, processMaxResponse+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: serving: process for model %q: reading the answer: %w", ml.ErrRuntime, m.cfg.Model, err)
	case len(data) > processMaxResponse:
		return nil, fmt.Errorf("%w: serving: process for model %q answered more than %d bytes", ml.ErrRuntime, m.cfg.Model, processMaxResponse)
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusUnprocessableEntity:
		// 422 is how FastAPI-based servers (MLServer) reject a request body.
		return nil, fmt.Errorf("%w: %s", ml.ErrBadInput, serverMessage(data))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: serving: process for model %q answered %s: %s", ml.ErrRuntime, m.cfg.Model, resp.Status, serverMessage(data))
	}
	return decodeInferResponse(data, m.schema)
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
		killGroup(p, syscall.SIGKILL)
		// Pooled connections died with the server; a POST on one would fail.
		m.client.CloseIdleConnections()
		m.logger.Warn("process exited", "pid", p.cmd.Process.Pid, "exit", reason)
		port := p.port
		for {
			delay, err := m.recordCrash(reason, time.Now())
			if err != nil {
				m.logger.Error("process keeps crashing; not restarting it", "error", err)
				m.log.note("%v", err)
				return
			}
			m.log.note("process exited (%s); restarting in %s", reason, delay)
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
	if err := startChild(cmd, m.user, func(err error) {
		p.waitErr = err
		close(p.exited)
	}); err != nil {
		return nil, fmt.Errorf("%w: serving: process for model %q: %w", ml.ErrBadModel, m.cfg.Model, err)
	}
	m.log.note("started %q (pid %d) on port %d", m.cfg.Spec.Command, cmd.Process.Pid, port)
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
				ml.ErrBadModel, m.cfg.Model, exitReason(p), m.log.tailNote())
		case <-readyCtx.Done():
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("serving: process for model %q: waiting for ready: %w", m.cfg.Model, err)
			}
			return fmt.Errorf("%w: serving: process for model %q did not answer ready on port %d within %s%s",
				ml.ErrBadModel, m.cfg.Model, p.port, m.cfg.ReadyTimeout, m.log.tailNote())
		case <-time.After(interval):
		}
		// Servers that load large models take seconds; no need to poll them
		// faster than a few times a second.
		interval = min(interval*2, 250*time.Millisecond)
	}
}

// ready asks the server once whether it is ready.
func (m *ProcessModel) ready(ctx context.Context, p *processInstance) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/v2/health/ready", nil)
	if err != nil {
		return false
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// fetchSchema reads the model's metadata. A server without it still serves,
// with an empty schema.
func (m *ProcessModel) fetchSchema(ctx context.Context, base string) ml.Schema {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	schema, err := m.getMetadata(ctx, base)
	if err != nil {
		m.logger.Warn("no model metadata; serving with an empty schema", "error", err)
		return ml.Schema{}
	}
	return schema
}

func (m *ProcessModel) getMetadata(ctx context.Context, base string) (ml.Schema, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/models/"+url.PathEscape(m.name), nil)
	if err != nil {
		return ml.Schema{}, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return ml.Schema{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, processMaxMetadata))
	if err != nil {
		return ml.Schema{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return ml.Schema{}, fmt.Errorf("GET /v2/models/%s answered %s: %s", m.name, resp.Status, serverMessage(data))
	}
	return decodeMetadata(data)
}

// v2Metadata is a model's metadata in the Open Inference Protocol v2.
type v2Metadata struct {
	Name     string         `json:"name"`
	Versions []string       `json:"versions"`
	Platform string         `json:"platform"`
	Inputs   []v2TensorSpec `json:"inputs"`
	Outputs  []v2TensorSpec `json:"outputs"`
}

type v2TensorSpec struct {
	Name     string  `json:"name"`
	DataType string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func decodeMetadata(data []byte) (ml.Schema, error) {
	var md v2Metadata
	if err := json.Unmarshal(data, &md); err != nil {
		return ml.Schema{}, fmt.Errorf("model metadata: %w", err)
	}
	specs := func(in []v2TensorSpec) []ml.TensorSpec {
		out := make([]ml.TensorSpec, len(in))
		for i, t := range in {
			shape := make([]int, len(t.Shape))
			for j, d := range t.Shape {
				shape[j] = int(max(d, -1)) // any negative dimension is free
			}
			out[i] = ml.TensorSpec{Name: t.Name, DataType: t.DataType, Shape: shape}
		}
		return out
	}
	return ml.Schema{Inputs: specs(md.Inputs), Outputs: specs(md.Outputs)}, nil
}

// stopInstance stops p's process group, SIGTERM first, and waits until p is
// reaped.
func (m *ProcessModel) stopInstance(p *processInstance) {
	killGroup(p, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(processStopGrace):
		m.logger.Warn("process ignored SIGTERM; killing it", "pid", p.cmd.Process.Pid, "grace", processStopGrace)
	}
	// Also reaches children still running after the server itself exited.
	killGroup(p, syscall.SIGKILL)
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

// freePort returns prefer if it can be listened on, else a port the kernel
// picks. The port is released before the server binds it, so another
// process may take it in between; the server then fails to start, which a
// restart on a new port recovers from.
func freePort(prefer int) (int, error) {
	if prefer > 0 {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(prefer))); err == nil {
			l.Close()
			return prefer, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("serving: no free port for a model process: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func newProcessClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil, // the server is on loopback; HTTP_PROXY must not apply
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// Every batcher worker may hold a connection; keeping them avoids a
		// new TCP handshake per prediction.
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // gzip over loopback costs CPU and saves nothing
	}}
}

// serverMessage is the "error" of a JSON error body, else the body's start.
func serverMessage(data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(data))
	if len(s) > processLogTail {
		s = s[:processLogTail] + "..."
	}
	if s == "" {
		return "(no message)"
	}
	return s
}

// v2DataTypes are the Open Inference Protocol's numeric types; BYTES, the
// one other, cannot be carried by a float64 tensor.
var v2DataTypes = map[string]bool{
	"BOOL": true, "FP16": true, "FP32": true, "FP64": true,
	"INT8": true, "INT16": true, "INT32": true, "INT64": true,
	"UINT8": true, "UINT16": true, "UINT32": true, "UINT64": true,
}

// inputSpec returns the name and datatype a tensor is sent with: its own
// name, or the schema's single input when it has none; the schema's
// datatype for that name, or FP64 when the schema does not say.
func inputSpec(t ml.Tensor, schema ml.Schema) (name, datatype string) {
	name = t.Name
	if name == "" {
		name = "input"
		if len(schema.Inputs) == 1 {
			name = schema.Inputs[0].Name
		}
	}
	for _, s := range schema.Inputs {
		if s.Name == name && v2DataTypes[s.DataType] {
			return name, s.DataType
		}
	}
	return name, ml.FP64
}

// encodeInfer writes the V2 inference request by hand: encoding/json
// would take a detour through reflection for every value, and could not
// say which value is at fault.
func (m *ProcessModel) encodeInfer(inputs []ml.Tensor) ([]byte, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ml.ErrBadInput)
	}
	size := 16
	for _, t := range inputs {
		size += 64 + 12*len(t.Data)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"inputs":[`...)
	for i, t := range inputs {
		if err := t.Check(); err != nil {
			return nil, err
		}
		name, dt := inputSpec(t, m.schema)
		if i > 0 {
			buf = append(buf, ',')
		}
		q, _ := json.Marshal(name) // a string always encodes
		buf = append(buf, `{"name":`...)
		buf = append(buf, q...)
		buf = append(buf, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, int64(d), 10)
		}
		buf = append(buf, `],"datatype":"`...)
		buf = append(buf, dt...)
		buf = append(buf, `","data":[`...)
		for j, v := range t.Data {
			if j > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendV2Value(buf, dt, v); err != nil {
				return nil, fmt.Errorf("%w: input %q value %d: %s", ml.ErrBadInput, name, j, err)
			}
		}
		buf = append(buf, "]}"...)
	}
	return append(buf, "]}"...), nil
}

// appendV2Value writes v as JSON in the form datatype dt calls for.
func appendV2Value(buf []byte, dt string, v float64) ([]byte, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return buf, fmt.Errorf("%v cannot be sent to a process model (its JSON has no NaN, infinity or missing values)", v)
	}
	switch dt {
	case "BOOL":
		return strconv.AppendBool(buf, v != 0), nil
	case "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64":
		if v != math.Trunc(v) {
			return buf, fmt.Errorf("%v is not an integer, and the input's datatype is %s", v, dt)
		}
		if v < 0 && dt[0] == 'U' {
			return buf, fmt.Errorf("%v is negative, and the input's datatype is %s", v, dt)
		}
		return strconv.AppendFloat(buf, v, 'f', -1, 64), nil
	case "FP32", "FP16":
		// The shortest form that reads back as the same float32: fewer
		// bytes, and the precision the server keeps anyway.
		if f := float32(v); !math.IsInf(float64(f), 0) {
			return strconv.AppendFloat(buf, float64(f), 'g', -1, 32), nil
		}
	}
	return strconv.AppendFloat(buf, v, 'g', -1, 64), nil
}

// v2InferResponse is the part of an inference answer Kiln reads.
type v2InferResponse struct {
	Outputs []struct {
		Name     string          `json:"name"`
		Shape    []int           `json:"shape"`
		DataType string          `json:"datatype"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// decodeInferResponse turns a V2 inference answer into tensors, in schema
// order where the schema names them. Data may be flat or nested; BOOL values
// become 1 and 0.
func decodeInferResponse(data []byte, schema ml.Schema) ([]ml.Tensor, error) {
	var resp v2InferResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("%w: serving: process answer: %w", ml.ErrRuntime, err)
	}
	if len(resp.Outputs) == 0 {
		return nil, fmt.Errorf("%w: serving: process answer has no outputs", ml.ErrRuntime)
	}
	out := make([]ml.Tensor, len(resp.Outputs))
	for i, o := range resp.Outputs {
		values, err := flattenV2Data(o.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: serving: process output %q (%s): %s", ml.ErrRuntime, o.Name, o.DataType, err)
		}
		t := ml.Tensor{Name: o.Name, Shape: o.Shape, Data: values}
		if o.Shape == nil {
			t.Shape = []int{len(values)} // a server that omits the shape sends a vector
		}
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("%w: serving: process output %q: shape %v does not match its %d values", ml.ErrRuntime, o.Name, o.Shape, len(values))
		}
		out[i] = t
	}
	rank := func(name string) int {
		if i := slices.IndexFunc(schema.Outputs, func(s ml.TensorSpec) bool { return s.Name == name }); i >= 0 {
			return i
		}
		return len(schema.Outputs)
	}
	slices.SortStableFunc(out, func(a, b ml.Tensor) int { return rank(a.Name) - rank(b.Name) })
	return out, nil
}

// flattenV2Data reads a V2 data array, flat or nested to any depth, in
// row-major order.
func flattenV2Data(raw json.RawMessage) ([]float64, error) {
	var flat []float64
	if json.Unmarshal(raw, &flat) == nil {
		return flat, nil // the common case, without a token walk
	}
	// Unmarshal fills what it can before it fails; start over.
	flat = flat[:0]
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '[':
				depth++
			case ']':
				depth--
			default:
				return nil, errors.New("data holds an object")
			}
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return nil, fmt.Errorf("value %s: %w", v, err)
			}
			flat = append(flat, f)
		case bool:
			if v {
				flat = append(flat, 1)
			} else {
				flat = append(flat, 0)
			}
		case nil:
			flat = append(flat, math.NaN())
		case string:
			return nil, errors.New("data holds strings (BYTES); Kiln carries numbers only")
		}
		if depth == 0 {
			break // a scalar, or the outer array closed
		}
	}
	if depth != 0 {
		return nil, errors.New("data is not a complete array")
	}
	return flat, nil
}

// processLog is the server's stdout and stderr, appended to a file that is
// rotated to <path>.1 when it would grow past max, so a chatty server keeps
// at most twice max on disk.
type processLog struct {
	path string
	max  int64

	mu sync.Mutex
	// mu guards f and size.
	f    *os.File // nil once closed, or after a failed rotation
	size int64
}

func openProcessLog(path string, max int64) (*processLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("serving: process log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("serving: process log: %w", err)
	}
	return &processLog{path: path, max: max, f: f, size: st.Size()}, nil
}

// Write never fails: an error would stop exec's copying, and the server
// would then die of a broken pipe on its next log line. Output that cannot
// be written is dropped.
func (l *processLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil && l.size > 0 && l.size+int64(len(p)) > l.max {
		l.f.Close()
		l.f = nil
		if err := os.Rename(l.path, l.path+".1"); err == nil || errors.Is(err, os.ErrNotExist) {
			l.f, _ = os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		}
		l.size = 0
	}
	if l.f != nil {
		n, _ := l.f.Write(p)
		l.size += int64(n)
	}
	return len(p), nil
}

// note writes a line of Kiln's own into the log, so that a user reading
// the server's output sees its exits and restarts in place.
func (l *processLog) note(format string, args ...any) {
	fmt.Fprintf(l, "[kiln] %s %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// tailNote is the end of the log as a suffix for an error message: the
// reason a server would not start is usually in its last lines.
func (l *processLog) tailNote() string {
	f, err := os.Open(l.path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-processLogTail, 0)
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	text := string(buf[:n])
	if off > 0 {
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			text = text[i+1:] // drop the cut first line
		}
	}
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "[kiln] ") {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return fmt.Sprintf(" (output in %s)", l.path)
	}
	return fmt.Sprintf("; last output: %s (all of it in %s)", strings.Join(lines, " | "), l.path)
}

// Close closes the file; later writes are dropped.
func (l *processLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
