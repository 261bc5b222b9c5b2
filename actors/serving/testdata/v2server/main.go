// Command v2server is a small Open Inference Protocol v2 server that the
// process runtime's tests run as a real child process. It serves one model,
// named by KILN_MODEL_NAME, on 127.0.0.1:$KILN_PORT: input "x" (FP32,
// [-1, 3]), output "y" (FP32, [-1]) with y = x0 + 2*x1 + 3*x2 per row.
//
// Test knobs, from the environment:
//
//	V2SERVER_CRASH_AFTER=N     answer N inference requests, then exit(3)
//	V2SERVER_READY_AFTER_MS=M  answer 503 to /v2/health/ready for M ms
//
// The model metadata's "parameters" echo what the server was started with
// (CUDA_VISIBLE_DEVICES, KILN_MODEL_PATH, V2SERVER_PROBE, its pid, its whole
// environment as "environ"), so a test can check the environment the runtime
// gave it.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

type tensorSpec struct {
	Name     string `json:"name"`
	DataType string `json:"datatype"`
	Shape    []int  `json:"shape"`
}

type tensor struct {
	Name     string    `json:"name"`
	Shape    []int     `json:"shape"`
	DataType string    `json:"datatype"`
	Data     []float64 `json:"data"`
}

type server struct {
	model      string
	crashAfter int64
	readyAt    time.Time
	infers     atomic.Int64
}

func main() {
	s := &server{model: os.Getenv("KILN_MODEL_NAME"), readyAt: time.Now()}
	if n, err := strconv.Atoi(os.Getenv("V2SERVER_CRASH_AFTER")); err == nil {
		s.crashAfter = int64(n)
	}
	if ms, err := strconv.Atoi(os.Getenv("V2SERVER_READY_AFTER_MS")); err == nil {
		s.readyAt = s.readyAt.Add(time.Duration(ms) * time.Millisecond)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /v2/health/ready", s.ready)
	mux.HandleFunc("GET /v2/models/{name}", s.metadata)
	mux.HandleFunc("POST /v2/models/{name}/infer", s.infer)

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("KILN_PORT")))
	if err != nil {
		log.Fatalf("v2server: %v", err)
	}
	log.Printf("v2server: serving model %q on %s", s.model, ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}

func (s *server) ready(w http.ResponseWriter, r *http.Request) {
	if time.Now().Before(s.readyAt) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

func (s *server) metadata(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != s.model {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("model %q is not served here", r.PathValue("name"))})
		return
	}
	params := map[string]any{
		"kiln_model_path": os.Getenv("KILN_MODEL_PATH"),
		"probe":           os.Getenv("V2SERVER_PROBE"),
		"pid":             os.Getpid(),
		"environ":         os.Environ(),
	}
	if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
		params["cuda_visible_devices"] = v // absent, not "", when unset
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":       s.model,
		"versions":   []string{"1"},
		"platform":   "kiln-test",
		"inputs":     []tensorSpec{{Name: "x", DataType: "FP32", Shape: []int{-1, 3}}},
		"outputs":    []tensorSpec{{Name: "y", DataType: "FP32", Shape: []int{-1}}},
		"parameters": params,
	})
}

func (s *server) infer(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != s.model {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("model %q is not served here", r.PathValue("name"))})
		return
	}
	// Read the whole body before answering: closing a socket with unread
	// data resets it, and the crash below would lose the answer.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	var req struct {
		Inputs []tensor `json:"inputs"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid request: " + err.Error()})
		return
	}
	y, err := score(req.Inputs)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model_name": s.model,
		"outputs":    []tensor{{Name: "y", Shape: []int{len(y)}, DataType: "FP32", Data: y}},
	})
	if n := s.infers.Add(1); s.crashAfter > 0 && n >= s.crashAfter {
		w.(http.Flusher).Flush()
		os.Exit(3)
	}
}

// score computes y = x0 + 2*x1 + 3*x2 for each row of the input "x".
func score(inputs []tensor) ([]float64, error) {
	if len(inputs) != 1 || inputs[0].Name != "x" {
		return nil, fmt.Errorf("expected one input named \"x\", got %d inputs", len(inputs))
	}
	x := inputs[0]
	if x.DataType != "FP32" {
		return nil, fmt.Errorf("input \"x\": datatype %s is not FP32", x.DataType)
	}
	if len(x.Shape) != 2 || x.Shape[1] != 3 {
		return nil, fmt.Errorf("input \"x\": expected shape [-1, 3], got %v", x.Shape)
	}
	if len(x.Data) != x.Shape[0]*3 {
		return nil, fmt.Errorf("input \"x\": shape %v needs %d values, got %d", x.Shape, x.Shape[0]*3, len(x.Data))
	}
	y := make([]float64, x.Shape[0])
	for i := range y {
		row := x.Data[3*i : 3*i+3]
		y[i] = float64(float32(row[0]) + 2*float32(row[1]) + 3*float32(row[2]))
	}
	return y, nil
}

// writeJSON answers with a Content-Length, so that a flushed answer is
// complete even if the process exits right after.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
