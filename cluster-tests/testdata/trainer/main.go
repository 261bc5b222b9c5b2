// Command trainer is a user's training program for the cluster tests: it
// does what a real script does with the environment a Kiln process job
// gets. It prints the GPUs it sees, writes step metrics to
// KILN_METRICS_FILE, logs a metric and a param to its run the way the
// MLflow client does (the same requests, to MLFLOW_TRACKING_URI, for
// MLFLOW_RUN_ID), and writes a model file (a copy of $MODEL_SRC) to
// KILN_OUTPUT_DIR.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "trainer:", err)
		os.Exit(1)
	}
}

func run() error {
	fmt.Printf("gpus=%s params=%s\n", os.Getenv("CUDA_VISIBLE_DEVICES"), os.Getenv("KILN_PARAMS"))
	f, err := os.OpenFile(os.Getenv("KILN_METRICS_FILE"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	for step, loss := range []float64{0.5, 0.25} {
		fmt.Fprintf(f, "{\"step\": %d, \"name\": \"file_loss\", \"value\": %g}\n", step+1, loss)
	}
	if err := f.Close(); err != nil {
		return err
	}
	runID := os.Getenv("MLFLOW_RUN_ID")
	now := time.Now().UnixMilli()
	if err := mlflow("runs/log-metric", map[string]any{"run_uuid": runID, "key": "mlflow_loss", "value": 0.4, "timestamp": now, "step": 1, "run_id": runID}); err != nil {
		return err
	}
	if err := mlflow("runs/log-parameter", map[string]any{"run_uuid": runID, "key": "epochs", "value": "3", "run_id": runID}); err != nil {
		return err
	}
	model, err := os.ReadFile(os.Getenv("MODEL_SRC"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(os.Getenv("KILN_OUTPUT_DIR"), "model.json"), model, 0o644)
}

// mlflow posts one request of MLflow's REST API, as its Python client does.
func mlflow(endpoint string, body map[string]any) error {
	b, _ := json.Marshal(body)
	resp, err := http.Post(os.Getenv("MLFLOW_TRACKING_URI")+"/api/2.0/mlflow/"+endpoint, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %d %s", endpoint, resp.StatusCode, out)
	}
	fmt.Printf("mlflow %s: %s\n", endpoint, bytes.TrimSpace(out))
	return nil
}
