package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/formats"
)

// baselineServer is the yardstick of `kiln bench predict -baseline`: a bare
// net/http handler that decodes the same request JSON, runs the same model
// file in-process and encodes the predictions, with nothing of Kiln's in
// between (no registry, routing, actors or transport). What Kiln adds to a
// prediction is the difference between the two runs. It runs in a process of
// its own (`kiln bench baseline-serve`, started by the benchmark), as a Kiln
// node does, so that neither side shares the load generator's runtime.
type baselineServer struct {
	model ml.Model
	srv   *http.Server
	ln    net.Listener
}

func newBaseline(format, path string) (*baselineServer, error) {
	m, err := formats.Load(format, path)
	if err != nil {
		return nil, fmt.Errorf("baseline model: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &baselineServer{model: m, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/models/{name}", b.predict)
	b.srv = &http.Server{Handler: mux}
	return b, nil
}

// baselineServeCommand is the hidden `kiln bench baseline-serve FORMAT FILE`:
// it prints its address on stdout and serves until stdin closes.
func baselineServeCommand() *command {
	return &command{synopsis: "", help: "Usage: kiln bench baseline-serve FORMAT FILE (started by kiln bench predict -baseline)", run: func(args []string) int {
		if len(args) != 2 {
			return fail(errors.New("usage: kiln bench baseline-serve FORMAT FILE"))
		}
		b, err := newBaseline(args[0], args[1])
		if err != nil {
			return fail(err)
		}
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			_ = b.srv.Close()
		}()
		fmt.Println(b.ln.Addr().String())
		_ = b.srv.Serve(b.ln)
		return 0
	}}
}

// baselineProcess is a running baseline-serve child.
type baselineProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// startBaseline starts `kiln bench baseline-serve` from this binary.
func startBaseline(format, path string) (*baselineProcess, error) {
	if format == "" {
		return nil, errors.New("-baseline needs -baseline-format (the model file's format)")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "bench", "baseline-serve", format, path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stdin.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("baseline server did not start: %w", err)
	}
	return &baselineProcess{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(line)}, nil
}

func (p *baselineProcess) close() {
	p.stdin.Close()
	_ = p.cmd.Wait()
}

// predict answers {"instances": [[...], ...]} with {"predictions": [...]},
// one row of the first output per instance.
func (b *baselineServer) predict(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Instances [][]float64 `json:"instances"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Instances) == 0 {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	n, f := len(req.Instances), len(req.Instances[0])
	data := make([]float64, 0, n*f)
	for _, row := range req.Instances {
		data = append(data, row...)
	}
	out, err := b.model.Predict(context.Background(), []ml.Tensor{{Shape: []int{n, f}, Data: data}})
	if err != nil || len(out) == 0 {
		http.Error(w, `{"error":"predict failed"}`, http.StatusInternalServerError)
		return
	}
	per := len(out[0].Data) / n
	preds := make([][]float64, n)
	for i := range preds {
		preds[i] = out[0].Data[i*per : (i+1)*per]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"predictions": preds})
}
