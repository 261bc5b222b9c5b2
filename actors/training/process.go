package training

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/actors/internal/proc"
	"github.com/kilnml/kiln/ml/formats"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// kilnJobEnv are the variables Kiln sets for a process member; the job's
// env cannot override them.
var kilnJobEnv = []string{
	"KILN_JOB_ID", "KILN_JOB_NAME", "KILN_ATTEMPT", "KILN_PARAMS", "KILN_DATASET", "KILN_DATASET_FORMAT",
	"KILN_TARGET", "KILN_OUTPUT_DIR", "KILN_METRICS_FILE", "CUDA_VISIBLE_DEVICES",
	"MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME",
	"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "NODE_RANK", "NNODES", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
}

// stopGrace is how long a member has to exit after SIGTERM (a cancel, a
// timeout) before it is killed.
const stopGrace = 10 * time.Second

// gangWait bounds how long a member waits for rank 0 to report its address.
const gangWait = 5 * time.Minute

// runProcess runs the job's command (DESIGN.md §7, "process"): in the
// attempt's directory, with CUDA_VISIBLE_DEVICES set to the member's GPUs,
// KILN_* telling it where its data, params, output and metrics go, MLflow's
// variables pointing at this node, and, in a gang, torchrun's rendezvous
// variables. Its exit code decides; on success a model in its output
// directory is registered when the job asks.
func (m *Member) runProcess(ctx context.Context, log *proc.Log) *outcome {
	j := m.Job
	spec := &j.Spec
	out := filepath.Join(m.Dir, "output")
	if err := os.MkdirAll(out, 0o750); err != nil {
		return &outcome{err: err}
	}
	metricsPath := filepath.Join(m.Dir, "metrics.jsonl")
	params, err := json.Marshal(spec.Params)
	if err != nil {
		return &outcome{err: fmt.Errorf("params: %w", err)}
	}
	gpus := make([]string, len(j.Allocations[m.Rank].GPUs))
	for i, g := range j.Allocations[m.Rank].GPUs {
		gpus[i] = strconv.Itoa(g)
	}
	kiln := map[string]string{
		"KILN_JOB_ID": j.ID, "KILN_JOB_NAME": spec.Name, "KILN_ATTEMPT": strconv.Itoa(j.Attempt),
		"KILN_PARAMS": string(params), "KILN_OUTPUT_DIR": out, "KILN_METRICS_FILE": metricsPath,
		"CUDA_VISIBLE_DEVICES": strings.Join(gpus, ","),
		"MLFLOW_TRACKING_URI":  m.Host.TrackingURI(), "MLFLOW_RUN_ID": j.RunID, "MLFLOW_EXPERIMENT_NAME": spec.Experiment,
	}
	if spec.Target != "" {
		kiln["KILN_TARGET"] = spec.Target
	}
	if spec.Dataset != "" {
		v, err := m.Host.DatasetVersion(spec.Dataset)
		if err != nil {
			return &outcome{err: err}
		}
		path, err := m.Host.FetchBlob(ctx, v.Digest, v.Holders)
		if err != nil {
			return &outcome{err: fmt.Errorf("fetching dataset %s: %w", v.Ref(), err)}
		}
		kiln["KILN_DATASET"], kiln["KILN_DATASET_FORMAT"] = path, v.Format
	}
	if spec.Nodes > 1 {
		master := m.addr
		if m.Rank > 0 {
			if master, err = m.waitForRankZero(ctx, log); err != nil {
				return &outcome{err: err}
			}
		}
		host, port, _ := net.SplitHostPort(master)
		n := strconv.Itoa(spec.Nodes)
		rank := strconv.Itoa(m.Rank)
		maps.Copy(kiln, map[string]string{"MASTER_ADDR": host, "MASTER_PORT": port, "WORLD_SIZE": n, "NNODES": n,
			"RANK": rank, "NODE_RANK": rank, "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"})
	}
	command := append(slices.Clone(spec.Trainer.Command), spec.Trainer.Args...)
	path, err := m.Exec.Check(fmt.Sprintf("job %q", j.ID), command, spec.Trainer.Env, m.Dir, kilnJobEnv)
	if err != nil {
		return &outcome{err: err}
	}
	env := make([]string, 0, len(spec.Trainer.Env)+len(kiln))
	for _, k := range slices.Sorted(maps.Keys(spec.Trainer.Env)) {
		if !slices.Contains(kilnJobEnv, k) {
			env = append(env, k+"="+spec.Trainer.Env[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(kiln)) {
		env = append(env, k+"="+kiln[k])
	}
	log.Note("running %s on GPUs [%s]", strings.Join(command, " "), strings.Join(gpus, ","))
	fwd := newMetricForwarder(m.Host, j.RunID)
	fwd.follow(metricsPath)
	res, err := proc.Run(ctx, proc.RunSpec{Command: command, Path: path, Env: env, Dir: m.Dir, Policy: m.Exec, Log: log, Grace: stopGrace})
	fwd.close()
	if err != nil {
		return &outcome{err: err}
	}
	metrics := readFinalMetrics(metricsPath)
	if res.ExitCode != 0 || res.Stopped {
		code := res.ExitCode
		err := fmt.Errorf("member %d exited with code %d (%s)", m.Rank, code, res.Status)
		if res.Stopped && ctx.Err() != nil {
			err = ctx.Err() // Run turns it into the stop's cause
		}
		return &outcome{err: err, exitCode: &code}
	}
	o := &outcome{metrics: metrics}
	if spec.RegisterAs != "" && m.Rank == 0 {
		file, format, err := findModel(out)
		if err != nil {
			return &outcome{err: fmt.Errorf("register_as %q: %w", spec.RegisterAs, err)}
		}
		if o.modelVersion, err = m.Host.RegisterModel(ctx, spec.RegisterAs, format, file, m.lineage(), m.metadata(metrics)); err != nil {
			return &outcome{err: fmt.Errorf("registering the model as %q: %w", spec.RegisterAs, err)}
		}
		log.Note("registered %s as version %d of model %s", filepath.Base(file), o.modelVersion, spec.RegisterAs)
	}
	return o
}

// waitForRankZero waits until rank 0 has reported its address.
func (m *Member) waitForRankZero(ctx context.Context, log *proc.Log) (string, error) {
	log.Note("waiting for member 0 to start")
	deadline := time.Now().Add(gangWait)
	for {
		j, err := m.Host.Job(m.Job.ID)
		if err == nil && j.Attempt == m.Job.Attempt && len(j.Allocations) > 0 && j.Allocations[0].Addr != "" {
			return j.Allocations[0].Addr, nil
		}
		if err == nil && j.Attempt != m.Job.Attempt {
			return "", fmt.Errorf("attempt %d ended while member %d waited for member 0", m.Job.Attempt, m.Rank)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("member 0 did not start within %s", gangWait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// outputManifest is KILN_OUTPUT_DIR/model.json, which names the model file
// and its format when detection would not do.
type outputManifest struct {
	File   string `json:"file"`
	Format string `json:"format"`
}

// findModel finds the model a process wrote to its output directory: the
// one named by model.json, or else the only file there, its format detected.
func findModel(dir string) (path, format string, err error) {
	if b, err := os.ReadFile(filepath.Join(dir, "model.json")); err == nil {
		var m outputManifest
		if err := json.Unmarshal(b, &m); err == nil && m.File != "" {
			if !filepath.IsLocal(m.File) {
				return "", "", fmt.Errorf("model.json names %q, which is not a file in KILN_OUTPUT_DIR", m.File)
			}
			return filepath.Join(dir, m.File), m.Format, nil
		}
		// model.json may be the model itself (an XGBoost JSON model).
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", err
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			files = append(files, e.Name())
		}
	}
	if len(files) != 1 {
		return "", "", fmt.Errorf("KILN_OUTPUT_DIR holds %d files; write one model file there, or model.json {\"file\": ..., \"format\": ...}", len(files))
	}
	path = filepath.Join(dir, files[0])
	head := make([]byte, 4096)
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	n, _ := f.Read(head)
	f.Close()
	if format = formats.Detect(head[:n]); format == "" {
		return "", "", fmt.Errorf("the format of %s could not be detected; name it in KILN_OUTPUT_DIR/model.json", files[0])
	}
	return path, format, nil
}

// readFinalMetrics reads a metrics file of JSON lines {"step", "name",
// "value"} and returns the last value of each name (at most
// structs.MaxJobMetrics names; malformed lines are skipped).
func readFinalMetrics(path string) map[string]float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		var p struct {
			Name  string   `json:"name"`
			Value *float64 `json:"value"`
		}
		if json.Unmarshal([]byte(line), &p) != nil || p.Name == "" || p.Value == nil || len(p.Name) > structs.MaxTagKeyLen {
			continue
		}
		if _, seen := out[p.Name]; seen || len(out) < structs.MaxJobMetrics {
			out[p.Name] = *p.Value
		}
	}
	return out
}

// freePort asks the kernel for a free TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("not a TCP address")
	}
	return addr.Port, nil
}
