package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/formats"
)

// baselineServer is the yardstick of `kiln bench predict -baseline`: a bare
// net/http handler in this process that decodes the same request JSON, runs
// the same model file in-process and encodes the predictions, with nothing of
// Kiln's in between (no registry, routing, actors or transport). What Kiln
// adds to a prediction is the difference between the two runs.
type baselineServer struct {
	model ml.Model
	srv   *http.Server
	ln    net.Listener
}

func startBaseline(format, path string) (*baselineServer, error) {
	if format == "" {
		return nil, errors.New("-baseline needs -baseline-format (the model file's format)")
	}
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
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

func (b *baselineServer) addr() string { return b.ln.Addr().String() }

func (b *baselineServer) close() { _ = b.srv.Close() }

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
