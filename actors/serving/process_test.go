//go:build unix

package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// TestProcessModel runs the real V2 server of testdata/v2server as a child
// process; it is built once and shared by the subtests.
func TestProcessModel(t *testing.T) {
	bin := buildV2Server(t)
	rows := ml.Tensor{Name: "x", Shape: []int{3, 3}, Data: []float64{1, 2, 3, 0, 0, 1, -1, 0.5, 2}}
	wantY := []float64{14, 3, 6}

	t.Run("StartReadsSchemaAndLogs", func(t *testing.T) {
		t.Parallel()
		m := startV2Server(t, bin, func(c *ProcessConfig) {
			// The first ready checks get 503: start must keep polling.
			c.Spec.Env = map[string]string{"V2SERVER_READY_AFTER_MS": "150"}
		})
		want := ml.Schema{
			Inputs:  []ml.TensorSpec{{Name: "x", DataType: "FP32", Shape: []int{-1, 3}}},
			Outputs: []ml.TensorSpec{{Name: "y", DataType: "FP32", Shape: []int{-1}}},
		}
		if got := m.Schema(); !reflect.DeepEqual(got, want) {
			t.Fatalf("Schema() = %+v, want %+v", got, want)
		}
		log, err := os.ReadFile(filepath.Join(m.cfg.WorkDir, "process.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(log, []byte(`v2server: serving model "adder"`)) {
			t.Fatalf("process.log lacks the server's output:\n%s", log)
		}
	})

	t.Run("Predict", func(t *testing.T) {
		t.Parallel()
		m := startV2Server(t, bin, nil)
		unnamed := rows
		unnamed.Name = ""
		for _, tc := range []struct {
			name  string
			input ml.Tensor
			want  []float64
		}{
			{"named", rows, wantY},
			{"unnamed takes the single input's name", unnamed, wantY},
			{"one row", ml.Tensor{Name: "x", Shape: []int{1, 3}, Data: []float64{0.25, 0.25, 0.25}}, []float64{1.5}},
			{"no rows", ml.Tensor{Name: "x", Shape: []int{0, 3}, Data: []float64{}}, []float64{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, err := m.Predict(context.Background(), []ml.Tensor{tc.input})
				if err != nil {
					t.Fatal(err)
				}
				checkY(t, out, tc.want)
			})
		}
		// Many callers at once, as a shard's batcher workers are.
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					v := float64(g*100 + i)
					out, err := m.Predict(context.Background(), []ml.Tensor{{Name: "x", Shape: []int{1, 3}, Data: []float64{v, 1, 1}}})
					if err != nil {
						t.Error(err)
						return
					}
					if len(out) != 1 || len(out[0].Data) != 1 || out[0].Data[0] != v+5 {
						t.Errorf("row %v: got %+v, want y = %v", v, out, v+5)
						return
					}
				}
			}()
		}
		wg.Wait()
	})

	t.Run("BadInputCarriesServerMessage", func(t *testing.T) {
		t.Parallel()
		m := startV2Server(t, bin, nil)
		_, err := m.Predict(context.Background(), []ml.Tensor{{Name: "x", Shape: []int{2, 2}, Data: []float64{1, 2, 3, 4}}})
		if !errors.Is(err, ml.ErrBadInput) || errors.Is(err, ml.ErrRuntime) {
			t.Fatalf("err = %v, want ml.ErrBadInput only", err)
		}
		if !strings.Contains(err.Error(), "expected shape [-1, 3], got [2 2]") {
			t.Fatalf("err = %v, want the server's message", err)
		}
	})

	// Not parallel: it sets the agent's own CUDA_VISIBLE_DEVICES, which a
	// replica without GPUs must not inherit, and a variable of the agent's
	// that no replica may see.
	t.Run("Environment", func(t *testing.T) {
		t.Setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
		t.Setenv("KILN_TEST_AGENT_SECRET", "agent-only")
		for _, tc := range []struct {
			name string
			gpus []int
			want string
		}{
			{"reserved GPUs", []int{1, 3}, "1,3"},
			{"no GPUs", nil, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m := startV2Server(t, bin, func(c *ProcessConfig) {
					c.GPUs = tc.gpus
					c.ModelPath = "/models/adder.pt"
					c.Spec.ModelName = "served-adder"
					c.Spec.Env = map[string]string{"V2SERVER_PROBE": "from-spec", "KILN_PORT": "1"}
				})
				params := metadataParams(t, m)
				if got, ok := params["cuda_visible_devices"]; !ok || got != tc.want {
					t.Errorf("CUDA_VISIBLE_DEVICES = %v (set: %v), want %q", got, ok, tc.want)
				}
				if got := params["kiln_model_path"]; got != "/models/adder.pt" {
					t.Errorf("KILN_MODEL_PATH = %v", got)
				}
				if got := params["probe"]; got != "from-spec" {
					t.Errorf("V2SERVER_PROBE from the spec = %v", got)
				}
				// Only the spec's env and Kiln's own: nothing of the agent's
				// (no KILN_TEST_AGENT_SECRET, no PATH, no HOME).
				var names []string
				environ, _ := params["environ"].([]any)
				for _, kv := range environ {
					name, _, _ := strings.Cut(fmt.Sprint(kv), "=")
					names = append(names, name)
				}
				slices.Sort(names)
				want := []string{"CUDA_VISIBLE_DEVICES", "KILN_MODEL_NAME", "KILN_MODEL_PATH", "KILN_PORT", "V2SERVER_PROBE"}
				if !slices.Equal(names, want) {
					t.Errorf("the server's environment has %v, want exactly %v", names, want)
				}
				// The server serves "served-adder" (KILN_MODEL_NAME) on the
				// runtime's port, not the spec's KILN_PORT: predictions reach it.
				out, err := m.Predict(context.Background(), []ml.Tensor{rows})
				if err != nil {
					t.Fatal(err)
				}
				checkY(t, out, wantY)
			})
		}
	})

	t.Run("RestartsAfterCrash", func(t *testing.T) {
		t.Parallel()
		m := startV2Server(t, bin, func(c *ProcessConfig) {
			// Every run of the server answers once, then exits with status 3.
			c.Spec.Env = map[string]string{"V2SERVER_CRASH_AFTER": "1"}
		})
		firstPid := instanceOf(m).cmd.Process.Pid
		out, err := m.Predict(context.Background(), []ml.Tensor{rows})
		if err != nil {
			t.Fatal(err)
		}
		checkY(t, out, wantY)

		// Until it is back, Predict fails at once; it never waits for the start.
		predict := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := m.Predict(ctx, []ml.Tensor{rows})
			if err != nil && (!errors.Is(err, ml.ErrRuntime) || ctx.Err() != nil) {
				t.Fatalf("Predict while the server is down: %v, want a prompt ml.ErrRuntime", err)
			}
			return err
		}
		waitUntil(t, 10*time.Second, func() bool {
			err := predict()
			return err != nil && strings.Contains(err.Error(), "is restarting after it exited (exit status 3)")
		})
		waitUntil(t, 10*time.Second, func() bool { return predict() == nil })
		if pid := instanceOf(m).cmd.Process.Pid; pid == firstPid {
			t.Fatalf("pid %d unchanged: the server was not restarted", pid)
		}
		if err := m.Failed(); err != nil {
			t.Fatalf("Failed() = %v after one crash", err)
		}
	})

	t.Run("FailsAfterRepeatedCrashes", func(t *testing.T) {
		t.Parallel()
		m := startV2Server(t, bin, func(c *ProcessConfig) {
			c.Spec.Env = map[string]string{"V2SERVER_CRASH_AFTER": "1"}
		})
		waitUntil(t, 20*time.Second, func() bool {
			_, _ = m.Predict(context.Background(), []ml.Tensor{rows})
			return m.Failed() != nil
		})
		failed := m.Failed()
		if !errors.Is(failed, ml.ErrRuntime) || !strings.Contains(failed.Error(), "exit status 3") {
			t.Fatalf("Failed() = %v, want ml.ErrRuntime with the last exit status", failed)
		}
		if _, err := m.Predict(context.Background(), []ml.Tensor{rows}); !errors.Is(err, ml.ErrRuntime) || err.Error() != failed.Error() {
			t.Fatalf("Predict after giving up = %v, want %v", err, failed)
		}
		if !processGone(instanceOf(m).cmd.Process.Pid) {
			t.Fatal("the last server is still running after the runtime gave up on it")
		}
	})

	t.Run("CloseKillsProcessGroup", func(t *testing.T) {
		t.Parallel()
		// A shell that leaves a child behind, then becomes the server.
		m := startV2Server(t, bin, func(c *ProcessConfig) {
			c.Spec.Command = []string{"sh", "-c", `sleep 30 & echo $! > child.pid; exec "$0"`, bin}
		})
		pid := instanceOf(m).cmd.Process.Pid
		child := readPid(t, filepath.Join(m.cfg.WorkDir, "child.pid"))
		if processGone(pid) || processGone(child) {
			t.Fatal("server or its child not running after start")
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if !processGone(pid) {
			t.Fatalf("server pid %d still running after Close", pid)
		}
		waitUntil(t, 5*time.Second, func() bool { return processGone(child) })
		if err := m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := m.Predict(context.Background(), []ml.Tensor{rows}); !errors.Is(err, ml.ErrRuntime) {
			t.Fatalf("Predict after Close = %v, want ml.ErrRuntime", err)
		}
	})
}

// TestProcessModel_StartFailures checks that a server that never becomes
// ready fails the start in time, with the reason, and is not left running.
func TestProcessModel_StartFailures(t *testing.T) {
	for _, tc := range []struct {
		name         string
		command      []string
		readyTimeout time.Duration
		ctxTimeout   time.Duration
		wantIs       error
		wantMsg      []string
	}{
		{
			name:         "never ready",
			command:      []string{"sh", "-c", "echo $$ > leader.pid; exec sleep 30"},
			readyTimeout: 300 * time.Millisecond,
			wantIs:       ml.ErrBadModel,
			wantMsg:      []string{"did not answer ready", "within 300ms"},
		},
		{
			name:       "start context ends",
			command:    []string{"sh", "-c", "echo $$ > leader.pid; exec sleep 30"},
			ctxTimeout: 300 * time.Millisecond,
			wantIs:     context.DeadlineExceeded,
			wantMsg:    []string{"waiting for ready"},
		},
		{
			name:    "exits before ready",
			command: []string{"sh", "-c", "echo $$ > leader.pid; echo 'no CUDA device found' >&2; exit 2"},
			wantIs:  ml.ErrBadModel,
			wantMsg: []string{"exited before it was ready: exit status 2", "no CUDA device found"},
		},
		{
			name:    "no such command",
			command: []string{"/nonexistent/kiln-test-server"},
			wantIs:  ml.ErrBadModel,
		},
		{
			name:    "no command",
			command: nil,
			wantIs:  ml.ErrBadModel,
		},
		{
			name:    "bare name not on PATH",
			command: []string{"kiln-test-no-such-server"},
			wantIs:  ml.ErrBadModel,
			wantMsg: []string{`command "kiln-test-no-such-server" is not found on this node's PATH`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			dir := t.TempDir()
			m, err := StartProcess(ctx, ProcessConfig{
				Spec:         structs.ProcessSpec{Command: tc.command},
				Model:        "adder",
				WorkDir:      dir,
				Logger:       testLogger(t),
				ReadyTimeout: tc.readyTimeout,
				Exec:         execAny,
			})
			if err == nil {
				m.Close()
				t.Fatal("StartProcess succeeded")
			}
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("err = %v, want %v", err, tc.wantIs)
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to mention %q", err, s)
				}
			}
			if pidFile := filepath.Join(dir, "leader.pid"); fileExists(pidFile) {
				if pid := readPid(t, pidFile); !processGone(pid) {
					t.Fatalf("process %d still running after the failed start", pid)
				}
			}
		})
	}
}

func TestProcessModel_EncodeInfer(t *testing.T) {
	schema := func(dt string) ml.Schema {
		return ml.Schema{Inputs: []ml.TensorSpec{{Name: "x", DataType: dt, Shape: []int{-1, 2}}}}
	}
	for _, tc := range []struct {
		name    string
		schema  ml.Schema
		input   ml.Tensor
		want    string
		wantErr string
	}{
		{"FP32 from the schema", schema("FP32"), ml.Tensor{Name: "x", Shape: []int{1, 2}, Data: []float64{0.1, 1e6}},
			`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[0.1,1e+06]}]}`, ""},
		{"unnamed takes the single input", schema("FP64"), ml.Tensor{Shape: []int{1, 2}, Data: []float64{0.1, -2}},
			`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","data":[0.1,-2]}]}`, ""},
		{"no schema: input, FP64", ml.Schema{}, ml.Tensor{Shape: []int{2}, Data: []float64{1.5, 2}},
			`{"inputs":[{"name":"input","shape":[2],"datatype":"FP64","data":[1.5,2]}]}`, ""},
		{"BYTES in the schema: FP64", schema("BYTES"), ml.Tensor{Name: "x", Shape: []int{1}, Data: []float64{3}},
			`{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[3]}]}`, ""},
		{"INT64", schema("INT64"), ml.Tensor{Name: "x", Shape: []int{1, 2}, Data: []float64{-3, 1e15}},
			`{"inputs":[{"name":"x","shape":[1,2],"datatype":"INT64","data":[-3,1000000000000000]}]}`, ""},
		{"BOOL", schema("BOOL"), ml.Tensor{Name: "x", Shape: []int{1, 2}, Data: []float64{0, 2}},
			`{"inputs":[{"name":"x","shape":[1,2],"datatype":"BOOL","data":[false,true]}]}`, ""},
		{"name needing escapes", ml.Schema{}, ml.Tensor{Name: `a"b`, Shape: []int{1}, Data: []float64{1}},
			`{"inputs":[{"name":"a\"b","shape":[1],"datatype":"FP64","data":[1]}]}`, ""},
		{"fraction for INT32", schema("INT32"), ml.Tensor{Name: "x", Shape: []int{1, 2}, Data: []float64{1, 2.5}},
			"", `input "x" value 1: 2.5 is not an integer`},
		{"negative for UINT8", schema("UINT8"), ml.Tensor{Name: "x", Shape: []int{1, 2}, Data: []float64{1, -1}},
			"", "is negative"},
		{"missing value", schema("FP32"), ml.Tensor{Name: "x", Shape: []int{1, 2}, Data: []float64{math.NaN(), 1}},
			"", "value 0: NaN cannot be sent"},
		{"shape and data disagree", schema("FP32"), ml.Tensor{Name: "x", Shape: []int{2, 2}, Data: []float64{1, 2}},
			"", "needs 4 values, got 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &ProcessModel{schema: tc.schema}
			got, err := m.encodeInfer([]ml.Tensor{tc.input})
			if tc.wantErr != "" {
				if !errors.Is(err, ml.ErrBadInput) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ml.ErrBadInput mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want || !json.Valid(got) {
				t.Fatalf("encodeInfer = %s\nwant         %s", got, tc.want)
			}
		})
	}
}

func TestProcessModel_DecodeInferResponse(t *testing.T) {
	schema := ml.Schema{Outputs: []ml.TensorSpec{{Name: "label"}, {Name: "probs"}}}
	for _, tc := range []struct {
		name    string
		body    string
		want    []ml.Tensor
		wantErr string
	}{
		{"flat", `{"outputs":[{"name":"label","shape":[2],"datatype":"INT64","data":[1,0]}]}`,
			[]ml.Tensor{{Name: "label", Shape: []int{2}, Data: []float64{1, 0}}}, ""},
		{"nested, in schema order", `{"outputs":[
			{"name":"probs","shape":[2,2],"datatype":"FP32","data":[[0.25,0.75],[1,0]]},
			{"name":"label","shape":[2],"datatype":"INT64","data":[1,0]}]}`,
			[]ml.Tensor{
				{Name: "label", Shape: []int{2}, Data: []float64{1, 0}},
				{Name: "probs", Shape: []int{2, 2}, Data: []float64{0.25, 0.75, 1, 0}},
			}, ""},
		{"BOOL", `{"outputs":[{"name":"ok","shape":[1,3],"datatype":"BOOL","data":[[true,false,true]]}]}`,
			[]ml.Tensor{{Name: "ok", Shape: []int{1, 3}, Data: []float64{1, 0, 1}}}, ""},
		{"scalar", `{"outputs":[{"name":"s","shape":[],"datatype":"FP64","data":2.5}]}`,
			[]ml.Tensor{{Name: "s", Shape: []int{}, Data: []float64{2.5}}}, ""},
		{"no shape", `{"outputs":[{"name":"y","datatype":"FP64","data":[1,2]}]}`,
			[]ml.Tensor{{Name: "y", Shape: []int{2}, Data: []float64{1, 2}}}, ""},
		{"shape disagrees", `{"outputs":[{"name":"y","shape":[3],"datatype":"FP64","data":[1,2]}]}`,
			nil, "does not match its 2 values"},
		{"strings", `{"outputs":[{"name":"y","shape":[1],"datatype":"BYTES","data":["a"]}]}`,
			nil, "BYTES"},
		{"no outputs", `{"outputs":[]}`, nil, "no outputs"},
		{"not JSON", `<html>`, nil, "process answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeInferResponse([]byte(tc.body), schema)
			if tc.wantErr != "" {
				if !errors.Is(err, ml.ErrRuntime) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ml.ErrRuntime mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzProcessModel_DecodeInferResponse feeds arbitrary answers of a server
// to the decoder: it must not panic, and what it accepts must be coherent.
func FuzzProcessModel_DecodeInferResponse(f *testing.F) {
	f.Add([]byte(`{"outputs":[{"name":"y","shape":[2],"datatype":"FP32","data":[1,2]}]}`))
	f.Add([]byte(`{"outputs":[{"name":"y","shape":[1,2],"datatype":"BOOL","data":[[true,null]]}]}`))
	f.Add([]byte(`{"outputs":[{"name":"y","shape":[-1],"data":[[[]]]}]}`))
	f.Add([]byte(`{"outputs":[{"name":"y","data":{"a":1}}]}`))
	schema := ml.Schema{Outputs: []ml.TensorSpec{{Name: "y"}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := decodeInferResponse(body, schema)
		if err != nil {
			if !errors.Is(err, ml.ErrRuntime) {
				t.Fatalf("error %v does not wrap ml.ErrRuntime", err)
			}
			return
		}
		for _, o := range out {
			if err := o.Check(); err != nil {
				t.Fatalf("accepted an incoherent output: %v", err)
			}
		}
	})
}

// buildV2Server builds testdata/v2server into the test's temporary directory.
func buildV2Server(t *testing.T) string {
	t.Helper()
	goTool := "go" // the go command that runs this test is on PATH

	bin := filepath.Join(t.TempDir(), "v2server")
	out, err := exec.Command(goTool, "build", "-o", bin, "./testdata/v2server").CombinedOutput()
	if err != nil {
		t.Fatalf("building testdata/v2server: %v\n%s", err, out)
	}
	return bin
}

// startV2Server starts bin as model "adder", after configure changes the
// config; the model is closed when the test ends.
func startV2Server(t *testing.T, bin string, configure func(*ProcessConfig)) *ProcessModel {
	t.Helper()
	cfg := ProcessConfig{
		Spec:         structs.ProcessSpec{Command: []string{bin}},
		Model:        "adder",
		WorkDir:      t.TempDir(),
		Logger:       testLogger(t),
		ReadyTimeout: 20 * time.Second,
		Exec:         execAny,
	}
	if configure != nil {
		configure(&cfg)
	}
	m, err := StartProcess(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// execAny is the exec config of a node that runs any command
// (exec { enabled = true, allowed_commands = ["*"] }).
var execAny = ExecPolicy{NodeExec: structs.NodeExec{Enabled: true, AllowedCommands: []string{"*"}}}

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testLogWriter{t}})
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func instanceOf(m *ProcessModel) *processInstance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// metadataParams asks the running server for its metadata's parameters,
// where the test server echoes its environment.
func metadataParams(t *testing.T, m *ProcessModel) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, instanceOf(m).base+"/v2/models/"+m.name, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // no idle connection left behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Parameters map[string]any `json:"parameters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %s, %v", resp.Status, err)
	}
	return md.Parameters
}

func checkY(t *testing.T, out []ml.Tensor, want []float64) {
	t.Helper()
	if len(out) != 1 || out[0].Name != "y" || !reflect.DeepEqual(out[0].Shape, []int{len(want)}) {
		t.Fatalf("outputs = %+v, want one tensor y of shape [%d]", out, len(want))
	}
	for i, v := range want {
		if math.Abs(out[0].Data[i]-v) > 1e-6 {
			t.Fatalf("y = %v, want %v", out[0].Data, want)
		}
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitUntil(t, 5*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// processGone reports whether pid no longer runs. A killed process whose
// parent died stays a zombie until init reaps it; it runs no more.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	i := bytes.LastIndexByte(stat, ')') // the state follows the command name
	return err == nil && i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// waitUntil polls cond until it holds, failing the test after timeout.
// (Named apart from the package's other helpers so the files compile
// together whoever declares which.)
func waitUntil(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
